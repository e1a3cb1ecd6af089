-- Replies as mail clients send them, DSN bounces, automatic replies and human corrections (#12).
-- Expand-only: new nullable columns and a wider CHECK; code that does not know them keeps working.

-- the full original of the reply (quoted history included) beside the new text in reply_text
ALTER TABLE outcome_labels ADD COLUMN reply_original_text text;

-- automatic replies prove delivery but are not engagement: they never set replied_at
ALTER TABLE outcome_labels ADD COLUMN auto_replied_at timestamptz;
ALTER TABLE outcome_labels ADD COLUMN auto_reply_category text
    CHECK (auto_reply_category IS NULL OR auto_reply_category IN ('auto_reply', 'out_of_office'));
ALTER TABLE outcome_labels ADD COLUMN lead_returns_on date;

-- a delivery status notification's enhanced status code (RFC 3463); 4.x.x failures are soft bounces
ALTER TABLE outcome_labels ADD COLUMN bounce_status text;
ALTER TABLE outcome_labels DROP CONSTRAINT IF EXISTS outcome_labels_bounce_type_check;
ALTER TABLE outcome_labels ADD CONSTRAINT outcome_labels_bounce_type_check
    CHECK (bounce_type IS NULL OR bounce_type IN ('bounce', 'blocked', 'soft'));

-- human corrections are events (event_type 'correction'); these record the latest one in force
ALTER TABLE outcome_labels ADD COLUMN corrected_at timestamptz;
ALTER TABLE outcome_labels ADD COLUMN corrected_by text;
CREATE INDEX outcome_labels_corrected ON outcome_labels (corrected_at) WHERE corrected_at IS NOT NULL;
