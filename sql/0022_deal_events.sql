-- Every event of one lead's deal goes to one message (domain.ingest.deal_home): an incoming deal
-- event first looks up the stored events of the same deal (provider, deal id) to find where the
-- deal already is. Only CRM deal events carry a deal id, so the index stays small.
-- On a large outcome_events, create it by hand with CREATE INDEX CONCURRENTLY (same name) before
-- deploying: IF NOT EXISTS then skips it.
CREATE INDEX IF NOT EXISTS outcome_events_deal ON outcome_events ((data->>'deal_id'), provider)
    WHERE data ? 'deal_id';
