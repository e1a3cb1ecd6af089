-- Weekly training runs, the model registry, and the history that makes a rollback one call.

CREATE TABLE training_runs (
    run_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    scope             text NOT NULL DEFAULT 'global',
    status            text NOT NULL CHECK (status IN ('pending', 'building', 'insufficient_data', 'uploading',
                          'training', 'registering', 'smoke_testing', 'succeeded', 'failed', 'cancelled')),
    trigger           text NOT NULL DEFAULT 'api',
    execution_arn     text,
    provider          text,
    base_model        text,
    method            text,
    params            jsonb NOT NULL DEFAULT '{}'::jsonb,
    dataset_uri       text,
    manifest          jsonb,
    dataset_hash      text,
    provider_files    jsonb,
    job_id            text,
    job_status        text,
    model_id          text,
    error             text,
    status_history    jsonb NOT NULL DEFAULT '[]'::jsonb,
    started_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
-- at most one run in flight per scope: POST /training/run answers 409 on a second
CREATE UNIQUE INDEX training_runs_one_active ON training_runs (scope)
    WHERE status IN ('pending', 'building', 'uploading', 'training', 'registering', 'smoke_testing');
CREATE INDEX training_runs_job ON training_runs (job_id);

CREATE TABLE model_registry (
    model_id            text PRIMARY KEY,
    version             text NOT NULL UNIQUE CHECK (version ~ '^v\d+\.\d+\.\d+$'),
    major               integer NOT NULL,
    minor               integer NOT NULL,
    patch               integer NOT NULL,
    status              text NOT NULL CHECK (status IN ('training', 'ready', 'deployed', 'archived', 'failed')),
    role                text CHECK (role IN ('champion', 'challenger')),
    provider            text NOT NULL,
    provider_model_id   text,
    base_model          text NOT NULL,
    run_id              uuid REFERENCES training_runs (run_id),
    dataset_hash        text,
    example_count       integer,
    trained_tokens      bigint,
    traffic_percentage  numeric(5, 2) NOT NULL DEFAULT 0 CHECK (traffic_percentage BETWEEN 0 AND 100),
    notes               jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    deployed_at         timestamptz,
    archived_at         timestamptz,
    UNIQUE (major, minor, patch)
);
CREATE UNIQUE INDEX model_registry_one_champion ON model_registry (role) WHERE role = 'champion';
CREATE UNIQUE INDEX model_registry_one_challenger ON model_registry (role) WHERE role = 'challenger';

-- every status, role or traffic change, with who and why
CREATE TABLE model_history (
    history_id      bigserial PRIMARY KEY,
    model_id        text NOT NULL REFERENCES model_registry (model_id),
    action          text NOT NULL,
    from_status     text,
    to_status       text,
    from_role       text,
    to_role         text,
    traffic_from    numeric(5, 2),
    traffic_to      numeric(5, 2),
    reason          text,
    evidence        jsonb,
    actor           text NOT NULL DEFAULT 'system',
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_history_model ON model_history (model_id, at);

CREATE VIEW active_models AS
    SELECT * FROM model_registry WHERE status = 'deployed' AND traffic_percentage > 0;

CREATE VIEW model_leaderboard AS
    SELECT m.model_id, m.version, m.status, m.role, m.traffic_percentage,
           count(o.outcome_id)                                           AS messages_sent,
           count(o.replied_at)                                           AS replies,
           count(o.outcome_id) FILTER (WHERE o.reply_category IN ('interested', 'meeting_request'))
                                                                         AS positive_replies,
           count(o.meeting_booked_at)                                    AS meetings,
           count(o.outcome_id) FILTER (WHERE o.deal_status = 'won')      AS deals_won,
           coalesce(sum(o.deal_value) FILTER (WHERE o.deal_status = 'won'), 0) AS revenue
      FROM model_registry m
      LEFT JOIN outcome_labels o ON o.model_registry_id = m.model_id
     GROUP BY m.model_id, m.version, m.status, m.role, m.traffic_percentage;
