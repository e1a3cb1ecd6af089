-- Costs that stay flat as the tables grow, and retention of raw provider payloads.
-- Expand-only: new indexes and a dropped NOT NULL; code of the previous release keeps working.
-- EXPLAIN evidence for every hot query: tests/integration/test_hot_query_plans.py (small tables,
-- sequential scans disabled) and `bench/scale.py` (plans printed at 5M events).

-- Retention (RetentionFunction): once an outcome is final and its retention has passed, the raw
-- provider payload of its events is removed. The normalised event (type, time, key, data, match
-- hints) stays, so the lifecycle is still a pure function of the events and every derived column
-- keeps its facts; a NULL payload means "removed by retention".
ALTER TABLE outcome_events ALTER COLUMN payload DROP NOT NULL;

-- The retention sweep walks the events that still carry a payload, oldest first. Entries leave
-- the index as payloads are removed, so it holds only the retention horizon, not the history.
CREATE INDEX outcome_events_raw_by_received ON outcome_events (received_at) WHERE payload IS NOT NULL;

-- Meetings: a Calendly cancellation or no-show finds its booking by meeting id
-- (dal.events.outcomes_for_meetings), and every ingest looks for orphaned events about the
-- meetings of the outcomes it touched (dal.events.claim_meeting_orphans). Without these, the first
-- is a sequential scan of outcome_events and the second reads every orphan.
--   before: Seq Scan on outcome_events  Filter: ((data ->> 'meeting_id') = ANY (...))
--   after:  Index Scan using outcome_events_meeting  Index Cond: ((data ->> 'meeting_id') = ANY (...))
--   before: Nested Loop > Bitmap Heap Scan on outcome_events e > Bitmap Index Scan using
--           outcome_events_orphan_outcome (no condition: every orphan)
--   after:  Nested Loop > Index Scan using outcome_events_outcome (b) > Index Scan using
--           outcome_events_orphan_meeting  Index Cond: ((data ->> 'meeting_id') = (b.data ->> 'meeting_id'))
CREATE INDEX outcome_events_meeting ON outcome_events ((data ->> 'meeting_id'))
    WHERE (data ->> 'meeting_id') IS NOT NULL;
CREATE INDEX outcome_events_orphan_meeting ON outcome_events ((data ->> 'meeting_id'))
    WHERE status = 'orphan' AND data ? 'meeting_id';

-- Reports (GET /training/leaderboard, GET /insights/strategies) read daily counts instead of the
-- whole history: messages sent before `report_rollup_state.rolled_before` (a UTC midnight) come
-- from report_daily_counts, the rest (today's) from outcome_labels through outcome_labels_sent.
-- ReportRollupFunction re-aggregates the days whose outcomes can still change (OUTCOME_FINAL_DAYS)
-- every hour; older days are final and stay as they are. The cells hold every organisation
-- together (a few hundred per day), as the reports do.
--   before: HashAggregate > Seq Scan on outcome_labels (the whole history, every call)
--   after:  HashAggregate > Append > (Index Scan using report_daily_counts_pkey
--           Index Cond: dimension = 'industry'; Index Scan using outcome_labels_sent
--           Index Cond: sent_at >= $0)
CREATE INDEX outcome_labels_sent ON outcome_labels (sent_at);

CREATE TABLE report_daily_counts (
    dimension        text NOT NULL CHECK (dimension IN ('model', 'industry', 'role')),
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
    PRIMARY KEY (dimension, value, framework, tone, day)
);
CREATE INDEX report_daily_counts_day ON report_daily_counts (day);

CREATE TABLE report_rollup_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rolled_before  timestamptz NOT NULL,
    refreshed_at   timestamptz NOT NULL DEFAULT now()
);
