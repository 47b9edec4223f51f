"""The fleet side: another process, usually on another machine, that consumes what the kiosks publish.

`events` stores check-ins once each and answers the read queries; `collector` is the reference consumer
(shared subscription, idempotent store, end-to-end acks); `tail` is the operator's live terminal view.
The venue console (web) is built on these.
"""
