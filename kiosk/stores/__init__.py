"""Everything the kiosk keeps on its SD card, one owner per table or file.

- `documents`: small TinyDB documents written atomically (temp file, fsync, rename);
- `roster`, `trust`: the people the site knows and the certificate signers it trusts (documents);
- `checkins`: the one definition of the journal's `checkins` table (columns, upload states, event form);
- `journal`: appends check-ins durably and answers the journal's queries;
- `outbox`: the upload state machine over the same rows.
"""
