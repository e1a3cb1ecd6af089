-- 1. A deal several messages led to is counted once, and every deal is counted. A HubSpot deal with
-- several e-mailed contacts went to each contact's message, and every count read each message's
-- deal_status / deal_value: a $50,000 deal with three contacts was 3 deals won and $150,000 in the
-- reports. And a message that won two deals (its lead's two deals) showed one of them, and every
-- count said one. From this release a deal is credited to one message: its state is its latest word
-- across all its messages (a HubSpot deal's later words reach only the contacts still on it), and it
-- goes to the first sent among those whose own latest word is that word, to none when that word is a
-- reopening (dal.events._DEAL_CREDITS); the others keep their own word in
-- shared_deal_status / shared_deal_value, which the training label and the stage read and no count
-- does. Every count reads deals_won / won_revenue: the won deals credited to the message, however
-- many (NULL when it won none; a row no re-derivation has written since counts its one deal_status:
-- dal.outcomes.won_deals_sql). Expand-only: nullable columns (no default: a catalogue change, no
-- table rewrite).
ALTER TABLE outcome_labels ADD COLUMN shared_deal_status text
    CHECK (shared_deal_status IS NULL OR shared_deal_status IN ('won', 'lost'));
ALTER TABLE outcome_labels ADD COLUMN shared_deal_value numeric(14, 2);
ALTER TABLE outcome_labels ADD COLUMN deals_won integer;
ALTER TABLE outcome_labels ADD COLUMN won_revenue numeric(18, 2);
-- when those won deals closed: the first (the experiments' close metric) and each with its value
-- ([[close time, value], ...]: the experiments' revenue counts the deals closed inside a lead's
-- window). NULL on a row no re-derivation has written since: it reads deal_closed_at as before.
ALTER TABLE outcome_labels ADD COLUMN first_won_at timestamptz;
ALTER TABLE outcome_labels ADD COLUMN won_closes jsonb;

-- A deal is its organisation, CRM account and deal id: one organisation may map several Pipedrive
-- companies (or HubSpot portals, Salesforce organisations), each numbering its own deals, so two
-- companies' deal 8 are two deals. New deal events carry the account (data.deal_account); the stored
-- ones get it from their raw payload (Pipedrive meta.company_id, HubSpot portalId, Salesforce
-- OrganizationId), read through outcome_events_deal (sql/0022: only deal events). A row whose payload
-- retention has removed (a message sent over OUTCOME_FINAL_DAYS + RAW_EVENT_RETENTION_DAYS ago) keeps
-- no account, as do in-house CRM deals (one numbering per organisation).
UPDATE outcome_events d
   SET data = d.data || jsonb_build_object('deal_account', a.account)
  FROM (SELECT event_id,
               CASE provider WHEN 'pipedrive' THEN payload->'meta'->>'company_id'
                             WHEN 'hubspot' THEN payload->>'portalId'
                             WHEN 'salesforce' THEN payload->>'OrganizationId' END AS account
          FROM outcome_events
         WHERE data ? 'deal_id' AND payload IS NOT NULL AND NOT data ? 'deal_account') a
 WHERE d.event_id = a.event_id AND a.account <> '' AND d.data ? 'deal_id';

-- A deal's rows whose payload is gone take the account its other rows name (its word after the
-- payload backfill above, or from a later event, with the account: dal.events.adopt_deal_account
-- does the same for events arriving from here): without it the deal's old win and its later loss
-- were two deals of one message. Not when the organisation's rows of that deal number name two
-- accounts (which one they were is unknown).
WITH named AS (
    SELECT org_id, provider, data->>'deal_id' AS deal_id, min(data->>'deal_account') AS account
      FROM outcome_events
     WHERE data ? 'deal_id' AND coalesce(data->>'deal_account', '') <> ''
       AND event_type IN ('deal_won', 'deal_lost', 'deal_reopened')
     GROUP BY 1, 2, 3
    HAVING count(DISTINCT data->>'deal_account') = 1)
UPDATE outcome_events r
   SET data = r.data || jsonb_build_object('deal_account', n.account)
  FROM named n
 WHERE r.data ? 'deal_id' AND r.data->>'deal_id' = n.deal_id AND r.provider = n.provider AND r.org_id = n.org_id
   AND coalesce(r.data->>'deal_account', '') = '' AND r.event_type IN ('deal_won', 'deal_lost', 'deal_reopened');

-- The report rollup's triggers (sql/0016) count deals_won / won_revenue (with the same fallback as
-- dal.outcomes.won_deals_sql), replaced before the backfill below so that it moves the counts too.
CREATE OR REPLACE FUNCTION report_count_rows_added_or_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    direction integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO report_count_changes (org_id, day, model_registry_id, lead_industry, lead_role, framework, tone,
                                      reply_category, messages, replies, meetings, deals_won, revenue)
    SELECT org_id, (sent_at AT TIME ZONE 'UTC')::date, model_registry_id, lead_industry, lead_role, framework,
           tone, reply_category, direction * count(*), direction * count(replied_at),
           direction * count(meeting_booked_at),
           direction * coalesce(sum(coalesce(deals_won, coalesce(deal_status = 'won', false)::int)), 0),
           direction * coalesce(sum(coalesce(won_revenue,
                                             CASE WHEN deal_status = 'won' THEN coalesce(deal_value, 0) ELSE 0 END)), 0)
      FROM changed_rows
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION report_count_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_count_changes (org_id, day, model_registry_id, lead_industry, lead_role, framework, tone,
                                      reply_category, messages, replies, meetings, deals_won, revenue)
    VALUES (OLD.org_id, (OLD.sent_at AT TIME ZONE 'UTC')::date, OLD.model_registry_id, OLD.lead_industry,
            OLD.lead_role, OLD.framework, OLD.tone, OLD.reply_category, -1, -(OLD.replied_at IS NOT NULL)::int,
            -(OLD.meeting_booked_at IS NOT NULL)::int,
            -coalesce(OLD.deals_won, coalesce(OLD.deal_status = 'won', false)::int),
            -coalesce(OLD.won_revenue, CASE WHEN OLD.deal_status = 'won' THEN coalesce(OLD.deal_value, 0) ELSE 0 END)),
           (NEW.org_id, (NEW.sent_at AT TIME ZONE 'UTC')::date, NEW.model_registry_id, NEW.lead_industry,
            NEW.lead_role, NEW.framework, NEW.tone, NEW.reply_category, 1, (NEW.replied_at IS NOT NULL)::int,
            (NEW.meeting_booked_at IS NOT NULL)::int,
            coalesce(NEW.deals_won, coalesce(NEW.deal_status = 'won', false)::int),
            coalesce(NEW.won_revenue, CASE WHEN NEW.deal_status = 'won' THEN coalesce(NEW.deal_value, 0) ELSE 0 END));
    RETURN NULL;
END $$;

DROP TRIGGER outcome_labels_report_row_changed ON outcome_labels;
CREATE TRIGGER outcome_labels_report_row_changed AFTER UPDATE ON outcome_labels FOR EACH ROW
    WHEN ((OLD.org_id, (OLD.sent_at AT TIME ZONE 'UTC')::date, OLD.model_registry_id, OLD.lead_industry,
           OLD.lead_role, OLD.framework, OLD.tone, OLD.reply_category, OLD.replied_at IS NULL,
           OLD.meeting_booked_at IS NULL, coalesce(OLD.deals_won, coalesce(OLD.deal_status = 'won', false)::int),
           coalesce(OLD.won_revenue, CASE WHEN OLD.deal_status = 'won' THEN coalesce(OLD.deal_value, 0) ELSE 0 END))
          IS DISTINCT FROM
          (NEW.org_id, (NEW.sent_at AT TIME ZONE 'UTC')::date, NEW.model_registry_id, NEW.lead_industry,
           NEW.lead_role, NEW.framework, NEW.tone, NEW.reply_category, NEW.replied_at IS NULL,
           NEW.meeting_booked_at IS NULL, coalesce(NEW.deals_won, coalesce(NEW.deal_status = 'won', false)::int),
           coalesce(NEW.won_revenue, CASE WHEN NEW.deal_status = 'won' THEN coalesce(NEW.deal_value, 0) ELSE 0 END)))
    EXECUTE FUNCTION report_count_row_changed();

CREATE OR REPLACE VIEW model_leaderboard AS
    SELECT m.model_id, m.version, m.status, m.role, m.traffic_percentage,
           count(o.outcome_id)                                           AS messages_sent,
           count(o.replied_at)                                           AS replies,
           count(o.outcome_id) FILTER (WHERE o.reply_category IN ('interested', 'meeting_request'))
                                                                         AS positive_replies,
           count(o.meeting_booked_at)                                    AS meetings,
           coalesce(sum(coalesce(o.deals_won, coalesce(o.deal_status = 'won', false)::int)), 0)::bigint AS deals_won,
           coalesce(sum(coalesce(o.won_revenue,
                                 CASE WHEN o.deal_status = 'won' THEN coalesce(o.deal_value, 0) ELSE 0 END)), 0)
                                                                         AS revenue
      FROM model_registry m
      LEFT JOIN outcome_labels o ON o.model_registry_id = m.model_id
     GROUP BY m.model_id, m.version, m.status, m.role, m.traffic_percentage;

-- Bring the stored messages holding a deal to what a re-derivation writes (domain.lifecycle
-- _derive_deal): each message counts the won deals credited to it (deals_won, won_revenue: its
-- latest word per deal, a deal of several messages only on the one credited as above, the deal events
-- without an id one deal); a message whose every deal is counted on another message has its deal
-- moved to shared_deal_* (its label, stage and quality score do not change). The report rollup
-- follows through its update trigger (above), applied by the next refresh. A message holding a deal
-- of its own besides a shared one keeps the deal_* columns it shows until its next event re-derives
-- it; its counts are right from here. Only the messages holding deal events are written (read
-- through outcome_events_deal, sql/0022): no long lock on a large table.
WITH holders AS (
    SELECT DISTINCT outcome_id FROM outcome_events
     WHERE data ? 'deal_id' AND status = 'applied' AND event_type IN ('deal_won', 'deal_lost', 'deal_reopened')),
latest AS (
    SELECT DISTINCT ON (e.outcome_id, coalesce(e.data->>'deal_account', ''), e.data->>'deal_id')
           e.outcome_id, e.org_id, coalesce(e.data->>'deal_account', '') AS account, e.data->>'deal_id' AS deal_id,
           e.event_type, e.occurred_at, nullif(e.data->>'value', '')::numeric AS value, o.sent_at
      FROM holders h
      JOIN outcome_events e ON e.outcome_id = h.outcome_id
      JOIN outcome_labels o ON o.outcome_id = h.outcome_id
     WHERE e.status = 'applied' AND e.event_type IN ('deal_won', 'deal_lost', 'deal_reopened')
     ORDER BY e.outcome_id, coalesce(e.data->>'deal_account', ''), e.data->>'deal_id', e.occurred_at DESC,
              e.provider || ':' || e.event_key COLLATE "C" DESC),
-- a deal's word is its latest stored row, applied or not (dal.events._DEAL_CREDITS): the CRM's last
-- word may reach only a contact nobody e-mailed (an orphan) or a lead who never saw the deal closed
-- (a reopening stored `ignored`); then no message holds it and none counts the deal
word AS (
    SELECT DISTINCT ON (e.org_id, coalesce(e.data->>'deal_account', ''), e.data->>'deal_id')
           e.org_id, coalesce(e.data->>'deal_account', '') AS account, e.data->>'deal_id' AS deal_id, e.event_type,
           e.occurred_at, nullif(e.data->>'value', '')::numeric AS value
      FROM outcome_events e
     WHERE e.event_type IN ('deal_won', 'deal_lost', 'deal_reopened') AND e.data ? 'deal_id'
     ORDER BY e.org_id, coalesce(e.data->>'deal_account', ''), e.data->>'deal_id', e.occurred_at DESC,
              e.provider || ':' || e.event_key COLLATE "C" DESC),
credited AS (
    SELECT DISTINCT ON (l.org_id, l.account, l.deal_id) l.org_id, l.account, l.deal_id, l.outcome_id
      FROM latest l
      JOIN word w ON w.org_id = l.org_id AND w.account = l.account AND w.deal_id = l.deal_id
       AND w.event_type = l.event_type AND w.occurred_at = l.occurred_at AND w.value IS NOT DISTINCT FROM l.value
     WHERE w.event_type <> 'deal_reopened'
     ORDER BY l.org_id, l.account, l.deal_id, l.sent_at, l.outcome_id),
counted AS (
    SELECT l.outcome_id,
           count(*) FILTER (WHERE l.event_type = 'deal_won'
                              AND (l.deal_id IS NULL OR c.outcome_id = l.outcome_id)) AS won,
           coalesce(sum(coalesce(l.value, 0)) FILTER (WHERE l.event_type = 'deal_won'
                              AND (l.deal_id IS NULL OR c.outcome_id = l.outcome_id)), 0) AS revenue,
           bool_and(l.deal_id IS NOT NULL AND c.outcome_id IS DISTINCT FROM l.outcome_id) AS all_shared
      FROM latest l
      LEFT JOIN credited c USING (org_id, account, deal_id)
     GROUP BY l.outcome_id)
UPDATE outcome_labels o
   -- (NULL when it counts none, as a re-derivation writes, unless the deal_status it keeps says won)
   SET deals_won = CASE WHEN c.won > 0 OR (o.deal_status = 'won' AND c.all_shared IS NOT TRUE) THEN c.won END,
       won_revenue = CASE WHEN c.won > 0 OR (o.deal_status = 'won' AND c.all_shared IS NOT TRUE) THEN c.revenue END,
       shared_deal_status = CASE WHEN c.all_shared THEN o.deal_status END,
       shared_deal_value = CASE WHEN c.all_shared THEN o.deal_value END,
       deal_status = CASE WHEN c.all_shared THEN NULL ELSE o.deal_status END,
       deal_value = CASE WHEN c.all_shared THEN NULL ELSE o.deal_value END,
       deal_currency = CASE WHEN c.all_shared THEN NULL ELSE o.deal_currency END,
       deal_closed_at = CASE WHEN c.all_shared THEN NULL ELSE o.deal_closed_at END,
       updated_at = now()
  FROM counted c
 WHERE o.outcome_id = c.outcome_id;

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
