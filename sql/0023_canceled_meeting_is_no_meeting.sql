-- One definition of "a meeting" for the reports, the experiments and the training label: a booking
-- that is not canceled (a reschedule's new booking carries the meeting on the same message). Until
-- now the label and the stage read it that way while every count read `meeting_booked_at IS NOT
-- NULL`, and meeting_booked_at stayed set on a message whose every booking was canceled. From this
-- release the derivation (domain.lifecycle) leaves meeting_booked_at empty then, with
-- meeting_canceled_at saying when; this brings the stored rows to what a re-derivation would write
-- (meeting_canceled_at was already set exactly when every booking was canceled, and nothing else
-- derived changes). The report rollup follows through its update trigger (sql/0016): each row
-- writes its -1 meeting to report_count_changes, applied by the next refresh.
-- A row the previous release re-derives during the deploy writes its old meeting_booked_at back,
-- until its next event.
UPDATE outcome_labels
   SET meeting_booked_at = NULL, updated_at = now()
 WHERE meeting_canceled_at IS NOT NULL AND meeting_booked_at IS NOT NULL;
