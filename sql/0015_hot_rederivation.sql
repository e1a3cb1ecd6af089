-- Re-deriving an outcome rewrites its row every time an event arrives. With free space left in each
-- page, PostgreSQL updates it in place (a heap-only tuple: none of the table's eleven indexes is
-- touched, as none of them covers a column that changes on a delivery, open or click), which makes
-- the largest SendGrid batch on many outcomes several times cheaper (bench/sendgrid_ingest.py).
-- Expand-only: a storage parameter; it applies to pages written from now on.
ALTER TABLE outcome_labels SET (fillfactor = 70);
