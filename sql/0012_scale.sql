-- Costs that stay flat as the tables grow, and retention of raw provider payloads.
-- Expand-only: new indexes, new tables and a dropped NOT NULL; the previous release keeps working.
-- EXPLAIN evidence for every hot query: tests/integration/test_hot_query_plans.py (small tables,
-- sequential scans disabled) and `bench/scale.py` (plans printed at 5M events). On a large store,
-- create the two indexes by hand first with CREATE INDEX CONCURRENTLY (same names): this file
-- then skips them instead of holding a write lock while it builds them.

-- Retention (RetentionFunction): once an outcome is final and its retention has passed, the raw
-- provider payload of its events is removed. The normalised event (type, time, key, data, match
-- hints) stays, so the lifecycle is still a pure function of the events and every derived column
-- keeps its facts; a NULL payload means "removed by retention".
ALTER TABLE outcome_events ALTER COLUMN payload DROP NOT NULL;

-- The retention sweep walks the events that still carry a payload, oldest first. Entries leave
-- the index as payloads are removed, so it holds only the retention horizon, not the history.
CREATE INDEX IF NOT EXISTS outcome_events_raw_by_received ON outcome_events (received_at)
    WHERE payload IS NOT NULL;

-- Reports (GET /training/leaderboard, GET /insights/strategies, both per organisation) read daily
-- counts instead of the organisation's whole history: messages sent before
-- `report_rollup_state.rolled_before` (a UTC midnight) come from report_daily_counts, the rest
-- (today's) from outcome_labels through outcome_labels_org_sent. ReportRollupFunction re-counts
-- the recent days every hour and the days whose outcomes can still change (OUTCOME_FINAL_DAYS)
-- once a day; older days are final and stay as they are.
--   before: GroupAggregate > Seq Scan on outcome_labels (Filter: org_id = ...; the whole history)
--   after:  HashAggregate > Append > (Index Scan using report_daily_counts_pkey
--           Index Cond: dimension = 'industry' AND org_id = ... AND day < ...;
--           Index Scan using outcome_labels_org_sent  Index Cond: org_id = ... AND sent_at >= ...)
-- the refresh reads the days it re-counts across every organisation
CREATE INDEX IF NOT EXISTS outcome_labels_sent ON outcome_labels (sent_at);

CREATE TABLE report_daily_counts (
    dimension        text NOT NULL CHECK (dimension IN ('model', 'industry', 'role')),
    org_id           text NOT NULL,
    value            text NOT NULL,  -- the model registry id, the lead's industry or role
    framework        text NOT NULL,  -- '' for the model dimension
    tone             text NOT NULL,  -- '' for the model dimension
    day              date NOT NULL,  -- the UTC day the messages were sent
    messages         integer NOT NULL,
    replies          integer NOT NULL,
    positive_replies integer NOT NULL,
    meetings         integer NOT NULL,
    deals_won        integer NOT NULL,
    revenue          numeric(18, 2) NOT NULL,
    PRIMARY KEY (dimension, org_id, value, framework, tone, day)
);
CREATE INDEX report_daily_counts_day ON report_daily_counts (day);

CREATE TABLE report_rollup_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rolled_before    timestamptz NOT NULL,
    refreshed_at     timestamptz NOT NULL DEFAULT now(),
    full_recount_at  timestamptz
);
