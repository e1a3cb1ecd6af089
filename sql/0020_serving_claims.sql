-- Serving syncs take turns per model. A sync reads the models whose deployment is out of step with
-- the registry and calls the provider for each (seconds); two syncs at once (the training API's and
-- the evaluator's) would both restore the same deployment, and a sync acting on a row read before a
-- rollback would record a stale result. So a sync first claims the rows it will act on:
-- `serving_claimed_by` (the sync's id) until `serving_claimed_until`; another sync skips a claimed
-- row, and a claim left by a sync that died (a Lambda killed at its timeout) expires, so the next
-- sync repairs the model. No transaction is held open across a provider call.
--
-- `serving_generation` counts the model's deleted deployments: a restore is named (and its
-- provider request token derived) from the model id and this number, not the clock, so a restore
-- retried after a crash asks for the same deployment instead of creating a second one.
--
-- Expand-only: nullable columns and one with a default; the previous release ignores them.

ALTER TABLE model_registry
    ADD COLUMN serving_claimed_by    text,
    ADD COLUMN serving_claimed_until timestamptz,
    ADD COLUMN serving_generation    integer NOT NULL DEFAULT 0;
