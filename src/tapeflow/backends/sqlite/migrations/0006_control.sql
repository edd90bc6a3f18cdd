-- 0006: why a run was asked to stop (cancel, terminate, timeout) and who asked (a cancel
-- is recorded once, so a second request finds this set); an activity task's timeouts.
ALTER TABLE workflows ADD COLUMN stop_reason TEXT;
ALTER TABLE workflows ADD COLUMN stop_requested_by TEXT;
ALTER TABLE activity_tasks ADD COLUMN timeouts TEXT;
