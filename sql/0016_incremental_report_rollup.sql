-- The reports' daily counts refreshed from what changed, not by re-counting the days that can still
-- change: each change to outcome_labels that moves a count (a message registered or removed, a
-- reply and its category, a meeting, a won deal and its value, or the organisation, day, model,
-- industry, role, framework or tone a message is counted under) writes its signed contribution to
-- report_count_changes, in the same transaction as the change, through the triggers below.
-- ReportRollupFunction (services.report_counts) consumes those rows with DELETE ... RETURNING and
-- adds them to report_daily_counts, so its cost follows the changes, not the days or the table.
--
-- Why no change is lost or counted twice (no timestamp or sequence watermark, which would miss a
-- transaction that took its number before the watermark and committed after it):
--   * a change and its rows here commit together, or not at all (the triggers run inside the
--     transaction that makes the change, whatever code or hand-written SQL made it);
--   * every refresh step is one REPEATABLE READ transaction whose snapshot is taken after it holds
--     the refresh lock (LOCK TABLE report_rollup_state, which takes no snapshot): it consumes
--     exactly the change rows its snapshot sees, and a day it counts from outcome_labels is counted
--     in that same snapshot, so a change is either in the snapshot (its rows consumed in the same
--     commit) or not (its rows stay for the next step);
--   * a consumed row is added to a day already rolled up, and discarded for a day that is still
--     live (after the boundary), because that day is counted whole when the boundary passes it,
--     from a later snapshot that holds the change.
-- Counts are sums of contributions, so rows consumed in any order and any batches add up to the
-- same numbers. tests/integration/test_report_rollup.py races writers against refreshes.
--
-- Expand-only: new tables, a new column and triggers; the previous release ignores them (the
-- triggers only write report_count_changes). A refresh by the previous release is noticed through
-- changes_applied_at and makes the next one re-count every day that can still change.
-- Loading with session_replication_role = replica (bench/scale.py's COPY) skips the triggers, as
-- it skips every trigger: count such a load with a first refresh or the safety-net re-count.

-- signed contributions of changed outcomes; no index: a refresh consumes them all, writers only append
-- (a logged table: an unlogged one is emptied by a crash, and its changes would be lost)
CREATE TABLE report_count_changes (
    org_id            text NOT NULL,
    day               date NOT NULL,  -- the UTC day the message was sent
    model_registry_id text,
    lead_industry     text,
    lead_role         text,
    framework         text,
    tone              text,
    reply_category    text,           -- kept as is: what counts as positive is the code's (dal.report_counts)
    messages          integer NOT NULL,
    replies           integer NOT NULL,
    meetings          integer NOT NULL,
    deals_won         integer NOT NULL,
    revenue           numeric(18, 2) NOT NULL
);

-- when each rolled-up day was last counted whole from outcome_labels: the safety net re-counts the
-- days that can still change, oldest count first, one day per transaction
CREATE TABLE report_rollup_days (
    day        date PRIMARY KEY,
    counted_at timestamptz NOT NULL
);

-- set with refreshed_at by every refresh step of this release; a refresh by an earlier release sets
-- only refreshed_at
ALTER TABLE report_rollup_state ADD COLUMN changes_applied_at timestamptz;

-- a registration batch (or a DELETE): one row per (organisation, day, cell) it adds to (takes from),
-- not one per message; both triggers name their transition table changed_rows
CREATE FUNCTION report_count_rows_added_or_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    direction integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO report_count_changes (org_id, day, model_registry_id, lead_industry, lead_role, framework, tone,
                                      reply_category, messages, replies, meetings, deals_won, revenue)
    SELECT org_id, (sent_at AT TIME ZONE 'UTC')::date, model_registry_id, lead_industry, lead_role, framework,
           tone, reply_category, direction * count(*), direction * count(replied_at),
           direction * count(meeting_booked_at), direction * count(*) FILTER (WHERE deal_status = 'won'),
           direction * coalesce(sum(deal_value) FILTER (WHERE deal_status = 'won'), 0)
      FROM changed_rows
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
    RETURN NULL;
END $$;

-- an update that moves a count: the old contribution out, the new one in
CREATE FUNCTION report_count_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_count_changes (org_id, day, model_registry_id, lead_industry, lead_role, framework, tone,
                                      reply_category, messages, replies, meetings, deals_won, revenue)
    VALUES (OLD.org_id, (OLD.sent_at AT TIME ZONE 'UTC')::date, OLD.model_registry_id, OLD.lead_industry,
            OLD.lead_role, OLD.framework, OLD.tone, OLD.reply_category, -1, -(OLD.replied_at IS NOT NULL)::int,
            -(OLD.meeting_booked_at IS NOT NULL)::int, -coalesce(OLD.deal_status = 'won', false)::int,
            -CASE WHEN OLD.deal_status = 'won' THEN coalesce(OLD.deal_value, 0) ELSE 0 END),
           (NEW.org_id, (NEW.sent_at AT TIME ZONE 'UTC')::date, NEW.model_registry_id, NEW.lead_industry,
            NEW.lead_role, NEW.framework, NEW.tone, NEW.reply_category, 1, (NEW.replied_at IS NOT NULL)::int,
            (NEW.meeting_booked_at IS NOT NULL)::int, coalesce(NEW.deal_status = 'won', false)::int,
            CASE WHEN NEW.deal_status = 'won' THEN coalesce(NEW.deal_value, 0) ELSE 0 END);
    RETURN NULL;
END $$;

-- TRUNCATE removes rows without row triggers: the counts start again with the next refresh
CREATE FUNCTION report_counts_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM report_rollup_state;
    DELETE FROM report_daily_counts;
    DELETE FROM report_rollup_days;
    DELETE FROM report_count_changes;
    RETURN NULL;
END $$;

CREATE TRIGGER outcome_labels_report_rows_added AFTER INSERT ON outcome_labels
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION report_count_rows_added_or_removed();
CREATE TRIGGER outcome_labels_report_rows_removed AFTER DELETE ON outcome_labels
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION report_count_rows_added_or_removed();
-- The ingest hot path re-derives outcomes on every delivery, open and click: those updates change
-- no count, the WHEN condition is false, and nothing is queued or written (a row-level trigger with
-- WHEN costs the comparison; a statement-level one with transition tables would copy every row).
CREATE TRIGGER outcome_labels_report_row_changed AFTER UPDATE ON outcome_labels FOR EACH ROW
    WHEN ((OLD.org_id, (OLD.sent_at AT TIME ZONE 'UTC')::date, OLD.model_registry_id, OLD.lead_industry,
           OLD.lead_role, OLD.framework, OLD.tone, OLD.reply_category, OLD.replied_at IS NULL,
           OLD.meeting_booked_at IS NULL, coalesce(OLD.deal_status = 'won', false),
           CASE WHEN OLD.deal_status = 'won' THEN OLD.deal_value END)
          IS DISTINCT FROM
          (NEW.org_id, (NEW.sent_at AT TIME ZONE 'UTC')::date, NEW.model_registry_id, NEW.lead_industry,
           NEW.lead_role, NEW.framework, NEW.tone, NEW.reply_category, NEW.replied_at IS NULL,
           NEW.meeting_booked_at IS NULL, coalesce(NEW.deal_status = 'won', false),
           CASE WHEN NEW.deal_status = 'won' THEN NEW.deal_value END))
    EXECUTE FUNCTION report_count_row_changed();
CREATE TRIGGER outcome_labels_report_truncated AFTER TRUNCATE ON outcome_labels
    FOR EACH STATEMENT EXECUTE FUNCTION report_counts_forget();
