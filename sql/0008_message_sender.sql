-- Who sent a message (optional `sender` on registration) and the lead's country: the dataset's
-- redaction removes the sender's name, title, company and signature, and reads phone numbers
-- for the lead's and the sender's regions. Expand-only: nullable columns, old code ignores them.
ALTER TABLE outcome_labels ADD COLUMN IF NOT EXISTS sender jsonb;
ALTER TABLE outcome_labels ADD COLUMN IF NOT EXISTS lead_country text;
