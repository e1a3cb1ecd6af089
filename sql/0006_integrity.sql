-- Outcome data under concurrency, hostile input and replays (expand-only: old code keeps working).

-- Replies name their message by RFC Message-ID (In-Reply-To / References): an orphan keeps the ids
-- it names so the message can claim it when it registers. Email-only orphans keep the window they
-- may be attributed within.
ALTER TABLE outcome_events ADD COLUMN match_references text[];
ALTER TABLE outcome_events ADD COLUMN match_window_days integer;
CREATE INDEX outcome_events_orphan_references ON outcome_events USING gin (match_references)
    WHERE status = 'orphan';
CREATE INDEX outcome_events_orphan_email_org ON outcome_events (match_email, org_id)
    WHERE status = 'orphan' AND match_email IS NOT NULL;
-- cancellations, no-shows and completions find their booking by meeting id
CREATE INDEX outcome_events_meeting ON outcome_events ((data->>'meeting_id'), provider)
    WHERE data ? 'meeting_id';

-- Malformed events inside a verified provider batch: kept with the reason, never applied.
CREATE TABLE quarantined_events (
    quarantine_id  bigserial PRIMARY KEY,
    provider       text NOT NULL,
    org_id         text REFERENCES organizations (org_id),
    reason         text NOT NULL,
    field          text,
    -- the event as received, as JSON text with every non-ASCII character escaped (NUL and lone
    -- surrogates cannot be stored in jsonb), so nothing the provider sent is lost
    raw            text NOT NULL,
    digest         text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, digest)
);
CREATE INDEX quarantined_events_org ON quarantined_events (org_id, received_at);

-- Messages to other services (the replies queue, the event bus) written in the same transaction
-- as the change that causes them, sent after commit, retried by the hourly sweep until sent.
CREATE TABLE outbox (
    outbox_id   bigserial PRIMARY KEY,
    topic       text NOT NULL CHECK (topic IN ('replies', 'events')),
    dedupe_key  text NOT NULL,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    UNIQUE (topic, dedupe_key)
);
CREATE INDEX outbox_pending ON outbox (topic, created_at) WHERE sent_at IS NULL;

-- per-organisation reads: leaderboard by model, strategies by segment
CREATE INDEX outcome_labels_org_model ON outcome_labels (org_id, model_registry_id)
    WHERE model_registry_id IS NOT NULL;
