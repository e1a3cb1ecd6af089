-- Core outcome store: organisations, one row per message sent, and the append-only provider event log.

CREATE TABLE organizations (
    org_id          text PRIMARY KEY CHECK (length(org_id) BETWEEN 1 AND 128),
    name            text,
    training_opt_in boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outcome_labels (
    outcome_id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                      text NOT NULL REFERENCES organizations (org_id),
    -- what makes a registration "the same message": client key, provider message id, or content hash
    dedupe_key                  text NOT NULL,
    campaign_id                 text NOT NULL,
    lead_id                     text NOT NULL,
    lead_email                  text,
    channel                     text NOT NULL DEFAULT 'email',
    subject                     text,
    body                        text NOT NULL,
    framework                   text,
    tone                        text,
    brief                       text,
    agent_decisions             jsonb NOT NULL DEFAULT '{}'::jsonb,
    provider_message_id         text,
    sent_at                     timestamptz NOT NULL,

    -- which model and experiment arm produced the message
    model_id                    text,
    model_registry_id           text,
    experiment_id               text,
    experiment_arm              text,

    -- lead context
    lead_first_name             text,
    lead_last_name              text,
    lead_company                text,
    lead_industry               text,
    lead_role                   text,
    lead_company_size           text,
    lead_icp_score              double precision CHECK (lead_icp_score IS NULL OR lead_icp_score BETWEEN 0 AND 1),
    lead_context                jsonb NOT NULL DEFAULT '{}'::jsonb,

    -- delivery (derived from outcome_events; never written by hand)
    processed_at                timestamptz,
    delivered_at                timestamptz,
    deferred_count              integer NOT NULL DEFAULT 0,
    dropped_at                  timestamptz,
    drop_reason                 text,
    bounced_at                  timestamptz,
    bounce_type                 text CHECK (bounce_type IS NULL OR bounce_type IN ('bounce', 'blocked')),
    bounce_reason               text,
    -- engagement: human opens are counted apart from machine (privacy-proxy) opens
    first_opened_at             timestamptz,
    open_count                  integer NOT NULL DEFAULT 0,
    first_machine_open_at       timestamptz,
    machine_open_count          integer NOT NULL DEFAULT 0,
    first_clicked_at            timestamptz,
    click_count                 integer NOT NULL DEFAULT 0,
    spam_reported_at            timestamptz,
    unsubscribed_at             timestamptz,
    -- reply and its classification
    replied_at                  timestamptz,
    reply_text                  text,
    reply_category              text,
    reply_sentiment_score       double precision CHECK (reply_sentiment_score IS NULL OR reply_sentiment_score BETWEEN -1 AND 1),
    reply_interest_level        text,
    reply_objection_type        text,
    reply_classification_source text,
    reply_classified_at         timestamptz,
    -- meeting
    meeting_booked_at           timestamptz,
    meeting_scheduled_start     timestamptz,
    meeting_scheduled_end       timestamptz,
    meeting_completed_at        timestamptz,
    meeting_canceled_at         timestamptz,
    meeting_no_show             boolean NOT NULL DEFAULT false,
    -- deal
    deal_status                 text CHECK (deal_status IS NULL OR deal_status IN ('won', 'lost')),
    deal_value                  numeric(14, 2),
    deal_currency               text,
    deal_closed_at              timestamptz,

    -- derived summary and training metadata
    stage                       text NOT NULL DEFAULT 'sent',
    last_event_at               timestamptz,
    event_count                 integer NOT NULL DEFAULT 0,
    training_label              text NOT NULL DEFAULT 'neutral' CHECK (training_label IN ('positive', 'negative', 'neutral')),
    training_weight             double precision NOT NULL DEFAULT 1.0,
    quality_score               double precision NOT NULL DEFAULT 0 CHECK (quality_score BETWEEN 0 AND 1),
    included_in_training        boolean NOT NULL DEFAULT false,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),

    UNIQUE (org_id, dedupe_key)
);

CREATE INDEX outcome_labels_provider_message_id ON outcome_labels (provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX outcome_labels_lead_email ON outcome_labels (org_id, lead_email, sent_at DESC) WHERE lead_email IS NOT NULL;
CREATE INDEX outcome_labels_lead_email_any_org ON outcome_labels (lead_email, sent_at DESC) WHERE lead_email IS NOT NULL;
CREATE INDEX outcome_labels_org_sent ON outcome_labels (org_id, sent_at);

-- Every provider event, exactly once. Nothing a provider sends is dropped: events that match
-- no registered message stay here as orphans and are applied when their message is registered.
CREATE TABLE outcome_events (
    event_id                  bigserial PRIMARY KEY,
    provider                  text NOT NULL,
    event_key                 text NOT NULL,
    event_type                text NOT NULL,
    occurred_at               timestamptz NOT NULL,
    received_at               timestamptz NOT NULL DEFAULT now(),
    -- org_id is unknown for an orphan until it is matched to a message
    org_id                    text REFERENCES organizations (org_id),
    outcome_id                uuid REFERENCES outcome_labels (outcome_id),
    status                    text NOT NULL CHECK (status IN ('applied', 'orphan', 'ignored')),
    -- how the event may be matched to a message (kept so orphans can be matched later)
    match_outcome_id          uuid,
    match_provider_message_id text,
    match_email               text,
    data                      jsonb NOT NULL DEFAULT '{}'::jsonb,
    payload                   jsonb NOT NULL,
    UNIQUE (provider, event_key),
    CHECK ((status = 'applied') = (outcome_id IS NOT NULL))
);

CREATE INDEX outcome_events_outcome ON outcome_events (outcome_id, occurred_at) WHERE outcome_id IS NOT NULL;
CREATE INDEX outcome_events_orphan_outcome ON outcome_events (match_outcome_id) WHERE status = 'orphan';
CREATE INDEX outcome_events_orphan_message ON outcome_events (match_provider_message_id) WHERE status = 'orphan';
