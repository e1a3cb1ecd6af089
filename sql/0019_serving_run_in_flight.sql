-- A run in 'serving' (its model's deployment coming up, up to 2 h) is in flight: it holds its
-- scope's one slot like every other step. 0004's index left it out, so a second run could be
-- created while one was serving (and the first then failed on this index at its smoke test).
--
-- Runs that the wider predicate would put side by side in one scope (a run created while another
-- was serving) are resolved first: the earliest keeps the slot, as it would have had the index
-- covered 'serving' (that later run would have been refused); each later one is closed as failed
-- with the reason. Its execution stops at its next step, which finds the run closed.
--
-- Compatible both ways: the previous release's ON CONFLICT predicate (the six other statuses)
-- implies this one, so its create_run still finds the index (and is refused while a run serves).
-- The table is locked for the few milliseconds this takes, so no run is created between the
-- clean-up and the new index.

LOCK TABLE training_runs IN ACCESS EXCLUSIVE MODE;

WITH in_flight AS (
    SELECT run_id, first_value(run_id) OVER (PARTITION BY scope ORDER BY started_at, run_id) AS keeper
      FROM training_runs
     WHERE status IN ('pending', 'building', 'uploading', 'training', 'registering', 'serving', 'smoke_testing')
)
UPDATE training_runs t
   SET status = 'failed',
       error = 'closed by migration 0019: run ' || f.keeper || ' was already in flight for scope '
               || t.scope || ' (it was serving when this run was created)',
       updated_at = now(),
       finished_at = now(),
       status_history = t.status_history || jsonb_build_array(jsonb_build_object('status', 'failed', 'at', now()))
  FROM in_flight f
 WHERE t.run_id = f.run_id AND f.run_id <> f.keeper;

DROP INDEX training_runs_one_active;
-- at most one run in flight per scope: POST /training/run answers 409 on a second
CREATE UNIQUE INDEX training_runs_one_active ON training_runs (scope)
    WHERE status IN ('pending', 'building', 'uploading', 'training', 'registering', 'serving', 'smoke_testing');
