-- Leads who asked not to be contacted again. Senders must check this before sending.
CREATE TABLE suppressions (
    org_id      text NOT NULL REFERENCES organizations (org_id),
    email       text NOT NULL,
    reason      text NOT NULL,
    outcome_id  uuid REFERENCES outcome_labels (outcome_id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, email)
);
CREATE INDEX suppressions_created ON suppressions (org_id, created_at);
