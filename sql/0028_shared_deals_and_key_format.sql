-- 1. A deal several messages led to is counted once. A HubSpot deal with several e-mailed contacts
-- went to each contact's message, and every count read each message's deal_status / deal_value: a
-- $50,000 deal with three contacts was 3 deals won and $150,000 in the reports. From this release
-- the deal is counted on one message (the first sent among those whose latest word about it is a
-- close, dal.events._DEAL_CREDITS) and the others keep it in shared_deal_status / shared_deal_value,
-- which the training label and the stage read and no count does. Expand-only: two nullable columns
-- (no default: a catalogue change, no table rewrite).
ALTER TABLE outcome_labels ADD COLUMN shared_deal_status text
    CHECK (shared_deal_status IS NULL OR shared_deal_status IN ('won', 'lost'));
ALTER TABLE outcome_labels ADD COLUMN shared_deal_value numeric(14, 2);

-- Bring the stored messages to what a re-derivation writes: a message whose every deal is counted on
-- another message has its deal moved to shared_deal_* (its label, stage and quality score do not
-- change). The report rollup follows through its update trigger (sql/0016), applied by the next
-- refresh. A message holding a deal of its own besides a shared one is left as it is until its next
-- event re-derives it. Only the messages of shared deals are written (the deal events are read
-- through outcome_events_deal, sql/0022): no long lock on a large table.
WITH deals AS (
    SELECT DISTINCT org_id, data->>'deal_id' AS deal_id FROM outcome_events
     WHERE data ? 'deal_id' AND status = 'applied' AND event_type IN ('deal_won', 'deal_lost', 'deal_reopened')),
latest AS (
    SELECT DISTINCT ON (e.outcome_id, d.org_id, d.deal_id) e.outcome_id, d.org_id, d.deal_id, e.event_type
      FROM deals d
      JOIN outcome_events e ON e.data ? 'deal_id' AND e.data->>'deal_id' = d.deal_id AND e.org_id = d.org_id
     WHERE e.status = 'applied' AND e.event_type IN ('deal_won', 'deal_lost', 'deal_reopened')
     ORDER BY e.outcome_id, d.org_id, d.deal_id, e.occurred_at DESC, e.provider || ':' || e.event_key COLLATE "C" DESC),
credited AS (
    SELECT DISTINCT ON (l.org_id, l.deal_id) l.org_id, l.deal_id, l.outcome_id
      FROM latest l JOIN outcome_labels o USING (outcome_id)
     WHERE l.event_type <> 'deal_reopened'
     ORDER BY l.org_id, l.deal_id, o.sent_at, l.outcome_id),
shared AS (
    SELECT l.outcome_id FROM latest l JOIN credited c USING (org_id, deal_id) WHERE c.outcome_id <> l.outcome_id
    EXCEPT
    SELECT e.outcome_id FROM outcome_events e
      LEFT JOIN credited c ON c.org_id = e.org_id AND c.deal_id = e.data->>'deal_id'
     WHERE e.status = 'applied' AND e.event_type IN ('deal_won', 'deal_lost', 'deal_reopened')
       AND e.outcome_id IN (SELECT outcome_id FROM latest)
       AND (NOT e.data ? 'deal_id' OR c.outcome_id = e.outcome_id))
UPDATE outcome_labels o
   SET shared_deal_status = o.deal_status, shared_deal_value = o.deal_value, deal_status = NULL, deal_value = NULL,
       deal_currency = NULL, deal_closed_at = NULL, updated_at = now()
  FROM shared s
 WHERE o.outcome_id = s.outcome_id AND o.deal_status IS NOT NULL;

-- 2. Which event keys were stored in the organisation's form ("<org>|<key>", domain.ingest.org_keys).
-- Until now a row's format was read from its key: one starting with its own organisation and '|' (or
-- with '|') was taken for the new form, so a key the release before it stored that itself began that
-- way was no longer known, and its redelivery across the upgrade was stored a second time. From this
-- release every row stored in the new form is marked (key_scoped = true); a row without the mark is
-- read as stored in the provider's own form (dal.events._LEGACY_ROW). Expand-only: a nullable column,
-- no default (a catalogue change: no table rewrite and no scan; the ALTER waits for its brief ACCESS
-- EXCLUSIVE lock at most the migration's lock_timeout).
ALTER TABLE outcome_events ADD COLUMN key_scoped boolean;

-- The new form shipped one release before this migration, together with sql/0026: rows stored in it
-- since then are marked here, so that one is not read as a provider's own key (an event whose provider
-- key is literally "acme|7" would be taken for a copy of acme's event 7). Rows stored since 0026 was
-- applied whose key starts with their organisation's id and '|', or with '|' (an event of unknown
-- organisation, maybe claimed since) (compared with left(), not LIKE: an org_id may hold '_'); read through 0026's index (received_at, event_id) WHERE payload IS NOT NULL,
-- so only the rows of that release are visited, never the whole table. (A row of that release whose
-- raw payload retention has already removed stays unmarked: it would need its provider key to be
-- another event's organisation-form key to matter.) On a database that applies 0026 and 0028 in one
-- deploy, no row is newer than 0026 and nothing is written.
UPDATE outcome_events e
   SET key_scoped = true
 WHERE e.payload IS NOT NULL
   AND e.received_at >= (SELECT applied_at FROM schema_migrations WHERE version = '0026')
   AND (left(e.event_key, 1) = '|' OR left(e.event_key, length(e.org_id) + 1) = e.org_id || '|');
