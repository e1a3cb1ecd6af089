-- Replies are linked to their message by the RFC 5322 Message-ID it was sent with
-- (In-Reply-To / References), and email attribution looks for the latest message to a lead.

ALTER TABLE outcome_labels ADD COLUMN email_message_id text;
CREATE INDEX outcome_labels_email_message_id ON outcome_labels (email_message_id) WHERE email_message_id IS NOT NULL;

-- Meetings complete with the passage of time: find the ones whose end has passed.
CREATE INDEX outcome_labels_meeting_due ON outcome_labels (meeting_scheduled_end)
    WHERE meeting_completed_at IS NULL AND meeting_scheduled_end IS NOT NULL;

CREATE INDEX outcome_events_orphan_email ON outcome_events (match_email) WHERE status = 'orphan';
