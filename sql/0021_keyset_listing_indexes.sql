-- GET /suppressions and GET /quarantine page by keyset: after the (time, unique key) of the last row
-- of the previous page. One provider batch writes many rows with the same time, so the time alone
-- cannot say where a page ended. These indexes hold each listing's whole order, so a page is one
-- index range read in order (no sort of an organisation's rows, however many share a time).
-- They replace the (org_id, time) indexes they extend: every query those served, these serve, so
-- the previous release keeps its plans during a deploy.
-- Both tables stay small (opt-outs, malformed events); should one grow large, create these by hand
-- with CREATE INDEX CONCURRENTLY (same names) before deploying: IF NOT EXISTS then skips them.
CREATE INDEX IF NOT EXISTS suppressions_org_created_email ON suppressions (org_id, created_at, email);
DROP INDEX IF EXISTS suppressions_created;
CREATE INDEX IF NOT EXISTS quarantined_events_org_received_id
    ON quarantined_events (org_id, received_at, quarantine_id);
DROP INDEX IF EXISTS quarantined_events_org;
