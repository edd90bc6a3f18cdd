-- 0009: why a run was asked to stop (cancel, terminate, timeout) and who asked (a cancel
-- is recorded once, so a second request finds this set); an activity task's timeouts.
ALTER TABLE workflows ADD COLUMN stop_reason text;
ALTER TABLE workflows ADD COLUMN stop_requested_by text;
ALTER TABLE activity_tasks ADD COLUMN timeouts json;
