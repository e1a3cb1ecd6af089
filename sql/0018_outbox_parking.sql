-- An outbox message the receiving service refuses for what it is (larger than SQS accepts, content
-- it rejects) can never be sent as it stands. Such refusals are counted apart from `attempts`
-- (which also counts outages, when every message fails and none is at fault), and after a few the
-- message is parked: `parked_at` set, its reason in `last_error`. Parked messages are no longer
-- claimed, so the oldest message cannot hold up every later one; they are counted in the
-- OutboxParked metric (alarm OutboxParkedAlarm) and sent again once `parked_at` is cleared.
--
-- Expand-only: two columns with defaults; the previous release ignores them (and would still
-- claim a parked message, as it did before). The pending index (sent_at IS NULL) still serves
-- the claim: parked messages are few.

ALTER TABLE outbox
    ADD COLUMN refusals  integer NOT NULL DEFAULT 0,
    ADD COLUMN parked_at timestamptz;
