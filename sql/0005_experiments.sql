-- Champion/challenger experiments and the sticky assignment of each lead to an arm.

CREATE TABLE experiments (
    experiment_id        text PRIMARY KEY,
    champion_model_id    text NOT NULL REFERENCES model_registry (model_id),
    challenger_model_id  text NOT NULL REFERENCES model_registry (model_id),
    salt                 text NOT NULL,
    stage                text NOT NULL CHECK (stage IN ('canary', 'ab')),
    status               text NOT NULL CHECK (status IN ('running', 'promoted', 'rolled_back', 'inconclusive')),
    allocation           numeric(5, 4) NOT NULL CHECK (allocation > 0 AND allocation < 1),
    planned_sample       integer NOT NULL CHECK (planned_sample > 0),
    config               jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_decision        jsonb,
    started_at           timestamptz NOT NULL DEFAULT now(),
    stage_started_at     timestamptz NOT NULL DEFAULT now(),
    ended_at             timestamptz
);
CREATE UNIQUE INDEX experiments_one_running ON experiments (status) WHERE status = 'running';

CREATE TABLE assignments (
    experiment_id  text NOT NULL REFERENCES experiments (experiment_id),
    org_id         text NOT NULL,
    lead_id        text NOT NULL,
    arm            text NOT NULL CHECK (arm IN ('champion', 'challenger')),
    bucket         integer NOT NULL,
    stage          text NOT NULL,
    assigned_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, org_id, lead_id)
);

CREATE INDEX outcome_labels_experiment ON outcome_labels (experiment_id, org_id, lead_id)
    WHERE experiment_id IS NOT NULL;
