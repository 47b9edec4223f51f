"""Everything the kiosk keeps on its SD card, one owner per table or file.

- `documents`: small TinyDB documents written atomically (temp file, fsync, rename);
- `roster`: the people the site knows (SQLite, indexed), with `roster_rows` (one row checked), `roster_csv`
  (reading a CSV as spreadsheets write it), `encodings` (naming the encoding of a file we do not read) and
  `roster_legacy` (the TinyDB roster of earlier versions, read once to migrate it);
- `trust`: the certificate signers the site trusts (documents);
- `checkins`: the one definition of the journal's `checkins` table (columns, upload states, event form);
- `journal`: appends check-ins durably and answers the journal's queries;
- `outbox`: the upload state machine over the same rows.
"""
