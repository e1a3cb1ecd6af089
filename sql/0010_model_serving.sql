-- How a registered model is served (issue #16). A Bedrock custom model cannot be invoked by its
-- own ARN: it is served through an on-demand custom model deployment or provisioned throughput,
-- whose ARN is what InvokeModel / Converse take. OpenAI fine-tunes are served by the provider.
-- Expand-only: the columns are nullable and older code ignores them.
ALTER TABLE model_registry
    ADD COLUMN serving_model_id text,
    ADD COLUMN serving_kind     text CHECK (serving_kind IN ('provider', 'on_demand', 'provisioned')),
    ADD COLUMN serving_status   text CHECK (serving_status IN ('creating', 'active', 'failed', 'deleted')),
    ADD COLUMN serving_error    text;

-- the sweep that retires deployments of archived or failed models, and re-creates them for
-- restored ones, reads these rows only
CREATE INDEX model_registry_serving_sweep ON model_registry (status)
    WHERE serving_status IS NOT NULL;

-- a run waits for its model's deployment to become active before the smoke test
ALTER TABLE training_runs DROP CONSTRAINT training_runs_status_check,
    ADD CONSTRAINT training_runs_status_check CHECK (status IN ('pending', 'building', 'insufficient_data',
        'uploading', 'training', 'registering', 'serving', 'smoke_testing', 'succeeded', 'failed', 'cancelled'));
