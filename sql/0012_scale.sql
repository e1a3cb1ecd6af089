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
