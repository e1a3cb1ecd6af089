-- Reads of the weekly report and of GET /campaigns/{campaign_id}/performance: one campaign of one
-- organisation, and the replies an organisation received per week.
-- On a large outcome_labels, create these by hand with CREATE INDEX CONCURRENTLY (same names)
-- before deploying: IF NOT EXISTS then skips them and the migration takes no write lock.
CREATE INDEX IF NOT EXISTS outcome_labels_org_campaign ON outcome_labels (org_id, campaign_id, sent_at);
CREATE INDEX IF NOT EXISTS outcome_labels_org_replied ON outcome_labels (org_id, replied_at)
    WHERE replied_at IS NOT NULL;
