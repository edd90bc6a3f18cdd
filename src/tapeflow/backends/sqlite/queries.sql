-- name: insert_workflow
INSERT INTO workflows (id, name, version, status, args, created_at, start_at)
VALUES (:id, :name, :version, 'pending', :args, :now, :start_at);

-- name: insert_workflow_task
INSERT INTO workflow_tasks (workflow_id, name) VALUES (:id, :name);

-- name: insert_inbox
INSERT INTO inbox (workflow_id, visible_at, timer_seq, event)
VALUES (:workflow_id, :visible_at, :timer_seq, :event);

-- name: get_workflow
SELECT w.id, w.name, w.version, w.status, w.args, w.created_at, w.start_at, w.completed_at,
       w.result, w.failure, w.history_length, t.last_error,
       w.start_at <= :now, (:now - p.last_poll_at) / 1e6
FROM workflows w LEFT JOIN workflow_tasks t ON t.workflow_id = w.id
    LEFT JOIN pollers p ON p.kind = 'workflow' AND p.name = w.name
WHERE w.id = :id;

-- name: record_poll
INSERT INTO pollers (kind, name, last_poll_at) VALUES (:kind, :name, :now)
ON CONFLICT (kind, name) DO UPDATE SET last_poll_at = excluded.last_poll_at;

-- name: workflow_status
SELECT status, name, start_at FROM workflows WHERE id = :id;

-- name: load_history
SELECT event FROM history WHERE workflow_id = :id ORDER BY seq;

-- name: ready_workflow_tasks
SELECT t.workflow_id
FROM workflow_tasks t
WHERE t.name IN (SELECT value FROM json_each(:names))
  AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= :now)
  AND t.not_before <= :now
  AND EXISTS (
      SELECT 1 FROM inbox e
      WHERE e.workflow_id = t.workflow_id
        AND e.visible_at <= :now - CASE WHEN t.sticky_owner IS NULL OR t.sticky_owner = :owner
                                        THEN 0 ELSE :sticky END
  )
LIMIT :limit;

-- name: lease_workflow_task
UPDATE workflow_tasks
SET lease_owner = :owner, lease_token = lease_token + 1, lease_expires_at = :expires
WHERE workflow_id = :id AND not_before <= :now
  AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
  AND (:steal OR sticky_owner IS NULL OR sticky_owner = :owner)
RETURNING lease_token, name, failures;

-- name: relet_workflow_task
UPDATE workflow_tasks
SET lease_token = lease_token + 1, lease_expires_at = :expires
WHERE workflow_id = :id AND lease_owner = :owner AND lease_expires_at > :now
RETURNING lease_token, name, failures;

-- name: workflow_history_length
SELECT history_length FROM workflows WHERE id = :id;

-- name: visible_inbox
SELECT id, event FROM inbox WHERE workflow_id = :id AND visible_at <= :now ORDER BY id;

-- name: workflow_lease
SELECT lease_token, lease_expires_at FROM workflow_tasks WHERE workflow_id = :id;

-- name: delete_inbox_event
DELETE FROM inbox WHERE id = :id AND workflow_id = :workflow_id;

-- name: insert_history
INSERT INTO history (workflow_id, seq, event) VALUES (:workflow_id, :seq, :event);

-- name: insert_activity_task
-- Leased at once (attempt 1) when the committing worker takes it eagerly.
INSERT INTO activity_tasks (workflow_id, seq, name, args, retry, visible_at,
                            lease_owner, lease_expires_at, lease_token, attempt)
VALUES (:workflow_id, :seq, :name, :args, :retry, :now, :owner, :expires, :leased, :leased);

-- name: cancel_timer
DELETE FROM inbox WHERE workflow_id = :workflow_id AND timer_seq = :seq;

-- name: finish_workflow
UPDATE workflows
SET status = :status, result = :result, failure = :failure, completed_at = :now,
    history_length = :history_length
WHERE id = :id;

-- name: drop_workflow_task
DELETE FROM workflow_tasks WHERE workflow_id = :id;

-- name: drop_activity_tasks
DELETE FROM activity_tasks WHERE workflow_id = :id;

-- name: unseen_inbox
-- Events (not timers) in the inbox that a committing task did not consume.
SELECT EXISTS (
    SELECT 1 FROM inbox
    WHERE workflow_id = :id AND timer_seq IS NULL
      AND id NOT IN (SELECT value FROM json_each(:consumed))
);

-- name: drop_inbox
DELETE FROM inbox WHERE workflow_id = :id;

-- name: advance_workflow
UPDATE workflows SET status = 'running', history_length = :history_length WHERE id = :id;

-- name: release_workflow_task
UPDATE workflow_tasks
SET lease_owner = NULL, lease_expires_at = NULL, failures = 0, last_error = NULL, not_before = 0,
    sticky_owner = lease_owner
WHERE workflow_id = :id;

-- name: abandon_workflow_task
UPDATE workflow_tasks
SET lease_owner = NULL, lease_expires_at = NULL, not_before = :not_before,
    failures = failures + (:error IS NOT NULL), last_error = coalesce(:error, last_error)
WHERE workflow_id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: ready_activity_tasks
SELECT id FROM activity_tasks
WHERE name IN (SELECT value FROM json_each(:names))
  AND visible_at <= :now
  AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
ORDER BY visible_at
LIMIT :limit;

-- name: lease_activity_task
UPDATE activity_tasks
SET lease_owner = :owner, lease_token = lease_token + 1, lease_expires_at = :expires,
    attempt = attempt + 1
WHERE id = :id
RETURNING id, workflow_id, seq, name, args, retry, attempt, lease_token,
          (SELECT name FROM workflows w WHERE w.id = activity_tasks.workflow_id) AS workflow_name,
          heartbeat_details;

-- name: reclaim_eager_activities
UPDATE activity_tasks
SET lease_token = lease_token + 1, lease_expires_at = :expires
WHERE workflow_id = :workflow_id AND seq IN (SELECT value FROM json_each(:seqs))
  AND lease_owner = :owner AND attempt = 1 AND lease_expires_at > :now
RETURNING id, workflow_id, seq, name, args, retry, attempt, lease_token,
          (SELECT name FROM workflows w WHERE w.id = activity_tasks.workflow_id) AS workflow_name,
          heartbeat_details;

-- name: delete_activity_task
DELETE FROM activity_tasks WHERE id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: retry_activity_task
UPDATE activity_tasks
SET lease_owner = NULL, lease_expires_at = NULL, visible_at = :visible_at,
    last_failure = :failure, heartbeat_details = coalesce(:details, heartbeat_details)
WHERE id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: extend_workflow_lease
UPDATE workflow_tasks SET lease_expires_at = :expires
WHERE workflow_id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: extend_activity_lease
UPDATE activity_tasks
SET lease_expires_at = :expires, heartbeat_details = coalesce(:details, heartbeat_details)
WHERE id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: next_due_workflow
SELECT min(max(
    e.visible_at + CASE WHEN t.sticky_owner IS NULL OR t.sticky_owner = :owner
                        THEN 0 ELSE :sticky END,
    t.not_before, coalesce(t.lease_expires_at, 0)))
FROM inbox e JOIN workflow_tasks t ON t.workflow_id = e.workflow_id
WHERE t.name IN (SELECT value FROM json_each(:names));

-- name: next_due_activity
SELECT min(max(visible_at, coalesce(lease_expires_at, 0))) FROM activity_tasks
WHERE name IN (SELECT value FROM json_each(:names));
