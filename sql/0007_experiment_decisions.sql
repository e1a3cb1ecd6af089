-- Experiment decisions that hold up (issue #10): segments (one run of a stage with one split and one
-- salt), the deploy-time plan and its warnings, and every evaluation kept as queryable history.
-- Expand-only: new columns have defaults, old code keeps working.

ALTER TABLE experiments
    ADD COLUMN segment        integer NOT NULL DEFAULT 1 CHECK (segment > 0),
    ADD COLUMN canary_sample  integer CHECK (canary_sample > 0),
    ADD COLUMN plan           jsonb,
    ADD COLUMN warnings       jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- segments whose data is not used for the primary metric (restarted after a sample-ratio mismatch)
    ADD COLUMN discarded_segments integer[] NOT NULL DEFAULT '{}';

ALTER TABLE assignments
    ADD COLUMN segment integer NOT NULL DEFAULT 1;

CREATE INDEX assignments_segment ON assignments (experiment_id, segment, arm);

-- One row per evaluation (daily schedule, promote-winner, CLI) and per operator action on the
-- experiment (restart): the snapshot it read, the intervals, the decision, and whether it was applied.
CREATE TABLE experiment_evaluations (
    evaluation_id     bigserial PRIMARY KEY,
    experiment_id     text NOT NULL REFERENCES experiments (experiment_id),
    evaluated_at      timestamptz NOT NULL DEFAULT now(),
    actor             text NOT NULL,
    stage             text NOT NULL,
    segment           integer NOT NULL,
    action            text NOT NULL,
    applied           boolean NOT NULL,
    reason            text NOT NULL,
    -- the figures a report draws over time
    days_running      double precision,
    primary_units     bigint,
    primary_lift      double precision,
    primary_low       double precision,
    primary_high      double precision,
    srm_p_value       double precision,
    snapshot          jsonb,
    decision          jsonb NOT NULL
);
CREATE INDEX experiment_evaluations_experiment ON experiment_evaluations (experiment_id, evaluated_at);

-- experiments started before this migration: their guardrail intervals are tuned to the planned sample
UPDATE experiments SET canary_sample = planned_sample WHERE canary_sample IS NULL;
