-- 0002: progress an activity records with activity.heartbeat(), read by its next attempt.

ALTER TABLE activity_tasks ADD COLUMN heartbeat_details json;
