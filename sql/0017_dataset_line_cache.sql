-- What pass 1 of a dataset build made of each item (an outcome, or a preference pair), so the next
-- build reads it back instead of redacting, formatting and scanning the same message again: a
-- weekly build re-reads every outcome of its window, and most of them were built the week before.
--
-- An entry is used only when its digest matches: a hash of the item's rows exactly as the build
-- reads them and of the recipe (the source of the code that makes a line, the Python, Unicode and
-- library versions and the line shape; services.dataset.LineCache). Anything that could change the
-- line changes the digest, and a changed item's entry is replaced, so there is at most one entry
-- per item and kind. The recipe is kept apart too, for the build's time check to count the entries
-- still current.
--
-- The lines are redacted text that passed the residual scan (a line the scan flagged is never
-- kept). They go with their outcome (ON DELETE CASCADE, either message of a pair), with their
-- organisation's opt-out (the trigger below; a build storing meanwhile holds the organisation FOR
-- SHARE, dal/dataset_cache.store), and once their earliest message is older than DATASET_CACHE_DAYS
-- (RetentionFunction, in short batches).
--
-- Expand-only: a new table, trigger and function; the previous release ignores them.

CREATE TABLE dataset_line_cache (
    kind        text NOT NULL,  -- the line shape: method and format (an item builds a line per shape)
    item        text NOT NULL,  -- the outcome id, or "preferred/rejected" for a pair
    outcome_id  uuid NOT NULL REFERENCES outcome_labels (outcome_id) ON DELETE CASCADE,
    partner_id  uuid REFERENCES outcome_labels (outcome_id) ON DELETE CASCADE,
    sent_at     timestamptz NOT NULL,  -- the earliest of the item's messages; retention goes by it
    recipe      bytea NOT NULL,  -- the code and versions the line was made with (part of the digest)
    digest      bytea NOT NULL,
    line        text NOT NULL,  -- the staged line: meta, a tab, the record
    signatures  bytea NOT NULL,  -- MinHash signature(s), uint32 little-endian
    prompt_key  bigint NOT NULL,
    split_key   bigint NOT NULL,  -- the uint64 split key, as the int64 of the same bits
    redactions  jsonb NOT NULL,  -- replacements by placeholder, for the manifest
    built_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, item)
);
-- the cascades' lookups (and the opt-out's, through the outcomes of the organisation), retention's
CREATE INDEX dataset_line_cache_outcome ON dataset_line_cache (outcome_id);
CREATE INDEX dataset_line_cache_partner ON dataset_line_cache (partner_id) WHERE partner_id IS NOT NULL;
CREATE INDEX dataset_line_cache_sent ON dataset_line_cache (sent_at);

-- an organisation that stops opting in takes its cached lines with it, in the same transaction
CREATE FUNCTION dataset_line_cache_opt_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dataset_line_cache c USING outcome_labels o
     WHERE o.org_id = NEW.org_id AND c.outcome_id = o.outcome_id;
    DELETE FROM dataset_line_cache c USING outcome_labels o  -- a pair whose other message is theirs
     WHERE o.org_id = NEW.org_id AND c.partner_id = o.outcome_id;
    RETURN NULL;
END $$;

CREATE TRIGGER organizations_training_opt_out AFTER UPDATE OF training_opt_in ON organizations
    FOR EACH ROW WHEN (OLD.training_opt_in AND NOT NEW.training_opt_in)
    EXECUTE FUNCTION dataset_line_cache_opt_out();
