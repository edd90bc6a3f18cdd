-- Named queries of the SQLite backend. A workflow's runs are found by its id; everything
-- else (tasks, inbox, history) is keyed by the run's run_id.

-- name: insert_run
INSERT INTO workflows (run_id, id, run_number, name, version, status, args, created_at,
                       start_at, parent_id, parent_run_id, parent_seq, on_parent_close,
                       queue, priority)
VALUES (:run_id, :id, :run_number, :name, :version, 'pending', :args, :now, :start_at,
        :parent_id, :parent_run_id, :parent_seq, :on_parent_close, :queue, :priority);

-- name: insert_workflow_task
INSERT INTO workflow_tasks (run_id, name, queue, priority, admitted)
VALUES (:run_id, :name, :queue, :priority, :admitted);

-- name: queue_limited
-- Whether work of the queue waits for admission (see schema.sql, queues).
SELECT EXISTS (
    SELECT 1 FROM queues
    WHERE name = :queue AND (concurrency IS NOT NULL OR rate_limit IS NOT NULL)
) AS limited;

-- name: insert_inbox
INSERT INTO inbox (run_id, visible_at, timer_seq, event)
VALUES (:run_id, :visible_at, :timer_seq, :event);

-- name: insert_event_key
-- No row inserted: the workflow id has had an event sent with this key.
INSERT INTO event_keys (workflow_id, key) VALUES (:id, :key) ON CONFLICT DO NOTHING;

-- name: find_update
-- The update sent to the workflow id, and the status of the run it went to.
SELECT u.run_id, u.outcome, w.status AS run_status
FROM updates u JOIN workflows w ON w.run_id = u.run_id
WHERE u.workflow_id = :id AND u.update_id = :update_id;

-- name: insert_update
INSERT INTO updates (workflow_id, update_id, run_id) VALUES (:id, :update_id, :run_id);

-- name: answer_update
-- The first answer stands (a reset run may answer again what its old run answered).
UPDATE updates SET outcome = :outcome
WHERE workflow_id = :id AND update_id = :update_id AND outcome IS NULL;

-- name: find_run
-- The latest run of a workflow (the highest run_number), or the run named, if it is one
-- of that workflow's.
SELECT run_id, run_number, name, status, start_at, stop_requested_by, history_length
FROM workflows
WHERE id = :id AND (:run_id IS NULL OR run_id = :run_id)
ORDER BY run_number DESC LIMIT 1;

-- name: get_run
SELECT run_id, run_number, name, status, start_at, stop_requested_by FROM workflows
WHERE run_id = :run_id;

-- name: open_children
-- The unfinished runs whose parent is this run, and what they get when it closes.
SELECT run_id, name, start_at, on_parent_close FROM workflows
WHERE parent_run_id = :run_id AND status IN ('pending', 'running')
  AND on_parent_close IS NOT NULL;

-- name: get_workflow
-- Chosen as by find_run.
SELECT w.id, w.run_id, w.name, w.version, w.status, w.args, w.created_at, w.start_at,
       w.completed_at, w.result, w.failure, w.history_length, t.last_error,
       w.stop_reason, w.stop_requested_by, w.start_at <= :now AS due,
       (:now - p.last_poll_at) / 1e6 AS silent_for, w.parent_id, w.parent_run_id,
       w.parent_seq, w.on_parent_close, w.vars, w.queue, w.priority, t.admitted,
       (SELECT b.run_id FROM workflows b
        WHERE b.id = w.id AND b.run_number = w.run_number - 1) AS previous_run_id
FROM workflows w LEFT JOIN workflow_tasks t ON t.run_id = w.run_id
    LEFT JOIN pollers p ON p.kind = 'workflow' AND p.name = w.name
WHERE w.id = :id AND (:run_id IS NULL OR w.run_id = :run_id)
ORDER BY w.run_number DESC LIMIT 1;

-- name: record_poll
INSERT INTO pollers (kind, name, last_poll_at) VALUES (:kind, :name, :now)
ON CONFLICT (kind, name) DO UPDATE SET last_poll_at = excluded.last_poll_at;

-- name: list_pollers
SELECT kind, name, last_poll_at FROM pollers ORDER BY kind, name;

-- name: load_history
SELECT event FROM history WHERE run_id = :run_id ORDER BY seq;

-- name: ready_workflow_tasks
SELECT t.run_id
FROM workflow_tasks t
WHERE t.name IN (SELECT value FROM json_each(:names))
  AND t.admitted
  AND t.queue IN (SELECT value FROM json_each(:queues))
  AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= :now)
  AND t.not_before <= :now
  AND EXISTS (
      SELECT 1 FROM inbox e
      WHERE e.run_id = t.run_id
        AND e.visible_at <= :now - CASE WHEN t.sticky_owner IS NULL OR t.sticky_owner = :owner
                                        THEN 0 ELSE :sticky END
  )
LIMIT :limit;

-- name: lease_workflow_task
-- Free and due, and not sticky to another worker unless :steal (a claim that found its
-- event waiting past STICKY_FOR).
UPDATE workflow_tasks
SET lease_owner = :owner, lease_token = lease_token + 1, lease_expires_at = :expires
WHERE run_id = :run_id AND not_before <= :now
  AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
  AND (:steal OR sticky_owner IS NULL OR sticky_owner = :owner)
RETURNING run_id, name, lease_token, failures, queue, priority,
          (SELECT w.id FROM workflows w WHERE w.run_id = workflow_tasks.run_id) AS workflow_id,
          (SELECT w.history_length FROM workflows w
           WHERE w.run_id = workflow_tasks.run_id) AS history_length,
          (SELECT json_array(w.parent_id, w.parent_run_id, w.parent_seq, w.on_parent_close)
           FROM workflows w
           WHERE w.run_id = workflow_tasks.run_id AND w.parent_run_id IS NOT NULL) AS parent;

-- name: reclaim_workflow_task
-- Leased anew to the owner that holds it already.
UPDATE workflow_tasks
SET lease_token = lease_token + 1, lease_expires_at = :expires
WHERE run_id = :run_id AND lease_owner = :owner AND lease_expires_at > :now
RETURNING run_id, name, lease_token, failures, queue, priority,
          (SELECT w.id FROM workflows w WHERE w.run_id = workflow_tasks.run_id) AS workflow_id,
          (SELECT w.history_length FROM workflows w
           WHERE w.run_id = workflow_tasks.run_id) AS history_length,
          (SELECT json_array(w.parent_id, w.parent_run_id, w.parent_seq, w.on_parent_close)
           FROM workflows w
           WHERE w.run_id = workflow_tasks.run_id AND w.parent_run_id IS NOT NULL) AS parent;

-- name: visible_inbox
SELECT id, event FROM inbox WHERE run_id = :run_id AND visible_at <= :now ORDER BY id;

-- name: workflow_task_fence
SELECT t.lease_token, t.lease_expires_at, w.history_length
FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
WHERE t.run_id = :run_id;

-- name: unseen_inbox
-- Events (not timers) in the run's inbox that a committing task did not consume.
SELECT EXISTS (
    SELECT 1 FROM inbox
    WHERE run_id = :run_id AND timer_seq IS NULL
      AND id NOT IN (SELECT value FROM json_each(:consumed))
) AS unseen;

-- name: delete_consumed_inbox
DELETE FROM inbox WHERE run_id = :run_id AND id IN (SELECT value FROM json_each(:ids));

-- name: insert_history
INSERT INTO history (run_id, seq, event) VALUES (:run_id, :seq, :event);

-- name: insert_activity_task
-- Leased at once (attempt 1) when the committing worker takes it (:leased is 1).
INSERT INTO activity_tasks (run_id, seq, name, args, retry, timeouts, visible_at,
                            lease_owner, lease_expires_at, lease_token, attempt, queue,
                            priority, admitted, trace_context)
VALUES (:run_id, :seq, :name, :args, :retry, :timeouts, :now, :owner, :expires, :leased,
        :leased, :queue, :priority, :admitted, :trace_context);

-- name: cancel_activity_tasks
DELETE FROM activity_tasks WHERE run_id = :run_id AND seq IN (SELECT value FROM json_each(:seqs));

-- name: cancel_timers
DELETE FROM inbox WHERE run_id = :run_id AND timer_seq IN (SELECT value FROM json_each(:seqs));

-- name: end_run
UPDATE workflows
SET status = :status, result = :result, failure = :failure, completed_at = :now,
    history_length = :history_length, stop_reason = coalesce(:reason, stop_reason),
    stop_requested_by = coalesce(:requested_by, stop_requested_by),
    vars = coalesce(:vars, vars)
WHERE run_id = :run_id;

-- name: request_stop
UPDATE workflows SET stop_reason = :reason, stop_requested_by = :requested_by
WHERE run_id = :run_id;

-- name: drop_workflow_task
DELETE FROM workflow_tasks WHERE run_id = :run_id;

-- name: drop_activity_tasks
DELETE FROM activity_tasks WHERE run_id = :run_id;

-- name: drop_inbox
DELETE FROM inbox WHERE run_id = :run_id;

-- name: advance_run
-- :vars (JSON text) replaces the run's variables; NULL keeps them.
UPDATE workflows
SET status = 'running', history_length = :history_length, vars = coalesce(:vars, vars)
WHERE run_id = :run_id;

-- name: release_workflow_task
-- :sticky_owner is the worker that takes the next task (HandOffs), or NULL.
UPDATE workflow_tasks
SET lease_owner = NULL, lease_expires_at = NULL, failures = 0, last_error = NULL, not_before = 0,
    sticky_owner = :sticky_owner
WHERE run_id = :run_id;

-- name: run_has_inbox
SELECT EXISTS (SELECT 1 FROM inbox WHERE run_id = :run_id) AS waiting;

-- name: abandon_workflow_task
UPDATE workflow_tasks
SET lease_owner = NULL, lease_expires_at = NULL, not_before = :not_before,
    failures = failures + (:error IS NOT NULL), last_error = coalesce(:error, last_error)
WHERE run_id = :run_id AND lease_token = :token AND lease_expires_at > :now;

-- name: ready_activity_tasks
SELECT id FROM activity_tasks
WHERE name IN (SELECT value FROM json_each(:names))
  AND admitted
  AND queue IN (SELECT value FROM json_each(:queues))
  AND visible_at <= :now
  AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
ORDER BY visible_at
LIMIT :limit;

-- name: lease_activity_task
UPDATE activity_tasks
SET lease_owner = :owner, lease_token = lease_token + 1, lease_expires_at = :expires,
    attempt = attempt + 1
WHERE id = :id
RETURNING id, run_id, seq, name, args, retry, attempt, lease_token, heartbeat_details,
          timeouts, trace_context, :now AS leased_at, queue,
          (SELECT w.id FROM workflows w WHERE w.run_id = activity_tasks.run_id) AS workflow_id,
          (SELECT w.name FROM workflows w
           WHERE w.run_id = activity_tasks.run_id) AS workflow_name,
          (SELECT w.queue FROM workflows w
           WHERE w.run_id = activity_tasks.run_id) AS workflow_queue,
          (SELECT w.priority FROM workflows w
           WHERE w.run_id = activity_tasks.run_id) AS workflow_priority;

-- name: reclaim_activity_tasks
-- The run's tasks of these seqs that the owner holds on their first attempt, leased anew.
UPDATE activity_tasks
SET lease_token = lease_token + 1, lease_expires_at = :expires
WHERE run_id = :run_id AND seq IN (SELECT value FROM json_each(:seqs))
  AND lease_owner = :owner AND attempt = 1 AND lease_expires_at > :now
RETURNING id, run_id, seq, name, args, retry, attempt, lease_token, heartbeat_details,
          timeouts, trace_context, :now AS leased_at, queue,
          (SELECT w.id FROM workflows w WHERE w.run_id = activity_tasks.run_id) AS workflow_id,
          (SELECT w.name FROM workflows w
           WHERE w.run_id = activity_tasks.run_id) AS workflow_name,
          (SELECT w.queue FROM workflows w
           WHERE w.run_id = activity_tasks.run_id) AS workflow_queue,
          (SELECT w.priority FROM workflows w
           WHERE w.run_id = activity_tasks.run_id) AS workflow_priority;

-- name: delete_activity_task
DELETE FROM activity_tasks WHERE id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: activity_task_exists
SELECT EXISTS (SELECT 1 FROM activity_tasks WHERE id = :id) AS found;

-- name: retry_activity_task
-- In a queue with limits, the next attempt waits for an admission of its own.
UPDATE activity_tasks
SET lease_owner = NULL, lease_expires_at = NULL, visible_at = :visible_at,
    last_failure = :failure, heartbeat_details = coalesce(:details, heartbeat_details),
    admitted = :admitted
WHERE id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: extend_workflow_lease
UPDATE workflow_tasks SET lease_expires_at = :expires
WHERE run_id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: extend_activity_lease
UPDATE activity_tasks
SET lease_expires_at = :expires, heartbeat_details = coalesce(:details, heartbeat_details)
WHERE id = :id AND lease_token = :token AND lease_expires_at > :now;

-- name: next_due_workflow
SELECT min(max(
    e.visible_at + CASE WHEN t.sticky_owner IS NULL OR t.sticky_owner = :owner
                        THEN 0 ELSE :sticky END,
    t.not_before, coalesce(t.lease_expires_at, 0))) AS due
FROM inbox e JOIN workflow_tasks t ON t.run_id = e.run_id
WHERE t.name IN (SELECT value FROM json_each(:names)) AND t.admitted
  AND t.queue IN (SELECT value FROM json_each(:queues));

-- name: next_due_activity
SELECT min(max(visible_at, coalesce(lease_expires_at, 0))) AS due FROM activity_tasks
WHERE name IN (SELECT value FROM json_each(:names)) AND admitted
  AND queue IN (SELECT value FROM json_each(:queues));

-- name: agenda
-- For a clock a test moves: the tasks leased now, and when the earliest task not leased
-- of these names is due (a failed workflow task's only once its retry is due), or the
-- earliest firing of an unpaused schedule of these workflows (a buffered due time once no
-- run of its schedule is open).
SELECT
    (SELECT count(*) FROM workflow_tasks WHERE lease_expires_at > :now)
  + (SELECT count(*) FROM activity_tasks WHERE lease_expires_at > :now) AS held,
    (SELECT min(due) FROM (
        SELECT max(e.visible_at, t.not_before) AS due
        FROM inbox e JOIN workflow_tasks t ON t.run_id = e.run_id
        WHERE t.name IN (SELECT value FROM json_each(:workflows)) AND t.admitted
          AND t.queue IN (SELECT value FROM json_each(:queues))
          AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= :now)
          AND (t.failures = 0 OR t.not_before <= :now)
        UNION ALL
        SELECT visible_at FROM activity_tasks
        WHERE name IN (SELECT value FROM json_each(:activities)) AND admitted
          AND queue IN (SELECT value FROM json_each(:queues))
          AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
        UNION ALL
        SELECT CASE WHEN s.buffered_at IS NULL OR EXISTS (
                   SELECT 1 FROM schedule_runs r JOIN workflows w ON w.id = r.workflow_id
                   WHERE r.schedule_id = s.id AND w.status IN ('pending', 'running'))
               THEN s.next_due_at ELSE min(s.buffered_at, s.next_due_at) END
        FROM schedules s
        WHERE s.workflow_name IN (SELECT value FROM json_each(:workflows)) AND NOT s.paused
    )) AS due;

-- name: copy_history
-- A reset's new run takes the old run's first :upto events as its own history.
INSERT INTO history (run_id, seq, event)
SELECT :run_id, seq, event FROM history WHERE run_id = :from_run_id AND seq <= :upto;

-- name: carry_inbox
-- What a reset's new run takes from the old run's inbox, in order: the events received
-- and not yet in history, and the execution timeout's timer.
INSERT INTO inbox (run_id, visible_at, timer_seq, event)
SELECT :run_id, visible_at, timer_seq, event FROM inbox
WHERE run_id = :from_run_id
  AND (timer_seq = :timeout_seq
       OR (timer_seq IS NULL AND json_extract(event, '$.kind') = 'event_received'))
ORDER BY id;

-- name: closed_workflows
-- Workflows whose latest run ended before :cutoff, oldest first: with that run's number.
SELECT w.id, w.run_number FROM workflows w
WHERE w.completed_at < :cutoff
  AND NOT EXISTS (SELECT 1 FROM workflows n WHERE n.id = w.id AND n.run_number > w.run_number)
ORDER BY w.completed_at
LIMIT :limit;

-- The rows of a workflow's runs up to run :upto (its latest, when it was found closed),
-- then its event keys and its runs: what deleting it deletes.

-- name: delete_history_of
DELETE FROM history
WHERE run_id IN (SELECT run_id FROM workflows WHERE id = :id AND run_number <= :upto);

-- name: delete_inbox_of
DELETE FROM inbox
WHERE run_id IN (SELECT run_id FROM workflows WHERE id = :id AND run_number <= :upto);

-- name: delete_activity_tasks_of
DELETE FROM activity_tasks
WHERE run_id IN (SELECT run_id FROM workflows WHERE id = :id AND run_number <= :upto);

-- name: delete_workflow_tasks_of
DELETE FROM workflow_tasks
WHERE run_id IN (SELECT run_id FROM workflows WHERE id = :id AND run_number <= :upto);

-- name: delete_event_keys_of
DELETE FROM event_keys WHERE workflow_id = :id;

-- name: delete_updates_of
DELETE FROM updates WHERE workflow_id = :id;

-- name: delete_runs_of
DELETE FROM workflows WHERE id = :id AND run_number <= :upto;

-- name: list_runs
-- A page of runs, newest first, of those the filters take: the filter_ fragments below,
-- joined by AND in place of the comment after WHERE (see tapeflow.backends._visibility).
SELECT w.id, w.run_id, w.name, w.status, w.created_at, w.start_at, w.completed_at,
       t.last_error, w.vars
FROM workflows w LEFT JOIN workflow_tasks t ON t.run_id = w.run_id
WHERE /* filters */
ORDER BY w.created_at DESC, w.run_id DESC
LIMIT :limit;

-- name: count_runs
SELECT w.status, count(*) AS n FROM workflows w WHERE /* filters */ GROUP BY w.status;

-- name: filter_status
w.status = :status

-- name: filter_statuses
w.status IN (SELECT value FROM json_each(:statuses))

-- name: filter_name
w.name = :name

-- name: filter_id_from
w.id >= :id_from

-- name: filter_id_to
w.id < :id_to

-- name: filter_created_after
w.created_at >= :created_after

-- name: filter_created_before
w.created_at < :created_before

-- name: filter_vars
NOT EXISTS (
    SELECT 1 FROM json_each(:vars) AS f
    WHERE NOT EXISTS (
        SELECT 1 FROM json_each(w.vars) AS v
        WHERE v.key = f.key AND v.value IS f.value
          AND replace(v.type, 'real', 'integer') = replace(f.type, 'real', 'integer')))

-- name: filter_latest
NOT EXISTS (SELECT 1 FROM workflows n WHERE n.id = w.id AND n.run_number > w.run_number)

-- name: filter_after
(w.created_at, w.run_id) < (:after_at, :after_run)

-- name: report_worker
INSERT INTO workers (id, info, started_at, last_seen_at) VALUES (:id, :info, :now, :now)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen_at = excluded.last_seen_at,
    stopped_at = NULL;

-- name: forget_workers
DELETE FROM workers WHERE last_seen_at < :before AND id <> :id;

-- name: report_worker_stopped
UPDATE workers SET last_seen_at = :now, stopped_at = :now WHERE id = :id;

-- name: list_workers
SELECT id, info, started_at, last_seen_at, stopped_at, (:now - last_seen_at) / 1e6 AS silent_for
FROM workers WHERE last_seen_at >= :since ORDER BY started_at DESC, id;

-- name: declare_queue
INSERT INTO queues (name, concurrency, rate_limit, rate_period, declared_at)
VALUES (:name, :concurrency, :rate_limit, :rate_period, :now)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
    rate_limit = excluded.rate_limit, rate_period = excluded.rate_period,
    declared_at = excluded.declared_at;

-- name: get_queue
SELECT name, concurrency, rate_limit, rate_period FROM queues WHERE name = :queue;

-- name: queue_held
-- The queue's work holding admission: workflows open, activities running or due.
SELECT (SELECT count(*) FROM workflow_tasks WHERE queue = :queue AND admitted)
     + (SELECT count(*) FROM activity_tasks WHERE queue = :queue AND admitted) AS n;

-- name: forget_queue_starts
DELETE FROM queue_starts WHERE queue = :queue AND started_at <= :before;

-- name: queue_started
SELECT count(*) AS n, min(started_at) AS oldest FROM queue_starts WHERE queue = :queue;

-- name: record_queue_start
INSERT INTO queue_starts (queue, started_at) VALUES (:queue, :now);

-- name: waiting_workflow_tasks
-- Due and free: a workflow task is leased as it is admitted.
SELECT t.run_id AS key FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
WHERE t.queue = :queue AND NOT t.admitted AND t.lease_expires_at IS NULL
  AND t.name IN (SELECT value FROM json_each(:names)) AND w.start_at <= :now
ORDER BY t.priority, w.start_at, w.created_at
LIMIT :limit;

-- name: waiting_activity_tasks
SELECT id AS key FROM activity_tasks
WHERE queue = :queue AND NOT admitted AND lease_expires_at IS NULL
  AND name IN (SELECT value FROM json_each(:names)) AND visible_at <= :now
ORDER BY priority, visible_at, id
LIMIT :limit;

-- name: next_waiting_workflow
SELECT min(w.start_at) AS due FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
WHERE t.queue = :queue AND NOT t.admitted AND t.name IN (SELECT value FROM json_each(:names))
  AND w.start_at > :now;

-- name: next_waiting_activity
SELECT min(visible_at) AS due FROM activity_tasks
WHERE queue = :queue AND NOT admitted AND name IN (SELECT value FROM json_each(:names))
  AND visible_at > :now;

-- name: admit_workflow_task
UPDATE workflow_tasks SET admitted = 1 WHERE run_id = :key;

-- name: admit_activity_task
UPDATE activity_tasks SET admitted = 1 WHERE id = :key;

-- name: list_queues
-- The queues declared, and those other than the default holding work, with the counts.
SELECT n.name, q.concurrency, q.rate_limit, q.rate_period,
       (SELECT count(*) FROM workflow_tasks WHERE queue = n.name AND admitted)
     + (SELECT count(*) FROM activity_tasks WHERE queue = n.name AND admitted) AS admitted,
       (SELECT count(*) FROM workflow_tasks WHERE queue = n.name AND NOT admitted)
     + (SELECT count(*) FROM activity_tasks WHERE queue = n.name AND NOT admitted) AS waiting,
       (SELECT count(*) FROM queue_starts s
        WHERE s.queue = n.name AND s.started_at > :now - q.rate_period) AS started
FROM (SELECT name FROM queues
      UNION SELECT queue FROM workflow_tasks WHERE queue <> 'default'
      UNION SELECT queue FROM activity_tasks WHERE queue <> 'default') AS n
    LEFT JOIN queues q ON q.name = n.name
ORDER BY n.name;

-- name: insert_schedule
-- No row inserted: the id is taken.
INSERT INTO schedules (id, workflow_name, args, cron, every, timezone, overlap,
                       catchup_window, paused, next_due_at, buffered_at, skipped_catchup,
                       skipped_overlap, created_at, updated_at)
VALUES (:id, :workflow_name, :args, :cron, :every, :timezone, :overlap, :catchup_window,
        :paused, :next_due_at, :buffered_at, :skipped_catchup, :skipped_overlap, :now, :now)
ON CONFLICT (id) DO NOTHING;

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: list_schedules
SELECT * FROM schedules ORDER BY id;

-- name: update_schedule
UPDATE schedules
SET args = :args, cron = :cron, every = :every, timezone = :timezone, overlap = :overlap,
    catchup_window = :catchup_window, paused = :paused, next_due_at = :next_due_at,
    buffered_at = :buffered_at, skipped_catchup = :skipped_catchup,
    skipped_overlap = :skipped_overlap, updated_at = :now
WHERE id = :id;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id;

-- name: delete_schedule_runs
DELETE FROM schedule_runs WHERE schedule_id = :id;

-- name: open_schedule_runs
-- The workflows the schedule started whose latest run is open, oldest first.
SELECT r.workflow_id FROM schedule_runs r
WHERE r.schedule_id = :id
  AND EXISTS (SELECT 1 FROM workflows w
              WHERE w.id = r.workflow_id AND w.status IN ('pending', 'running'))
ORDER BY r.started_at, r.workflow_id;

-- name: insert_schedule_run
INSERT INTO schedule_runs (schedule_id, workflow_id, due_at, started_at)
VALUES (:id, :workflow_id, :due_at, :now)
ON CONFLICT DO NOTHING;

-- name: prune_schedule_runs
-- Forget all but the newest :keep runs and the open ones (:open, JSON).
DELETE FROM schedule_runs
WHERE schedule_id = :id
  AND workflow_id NOT IN (SELECT value FROM json_each(:open))
  AND workflow_id NOT IN (SELECT workflow_id FROM schedule_runs WHERE schedule_id = :id
                          ORDER BY started_at DESC, workflow_id DESC LIMIT :keep);

-- name: schedule_runs
-- The runs recorded, the newest first, each with its latest run's status (NULL: deleted).
SELECT r.workflow_id, r.due_at, r.started_at,
       (SELECT w.status FROM workflows w WHERE w.id = r.workflow_id
        ORDER BY w.run_number DESC LIMIT 1) AS status
FROM schedule_runs r
WHERE r.schedule_id = :id
ORDER BY r.started_at DESC, r.workflow_id DESC;

-- name: due_schedules
-- The unpaused schedules of these workflows due now, or holding a buffered due time, with
-- the workflows they wait for (JSON), the most overdue first.
SELECT s.id, s.next_due_at, s.buffered_at,
       (SELECT json_group_array(r.workflow_id) FROM schedule_runs r
        WHERE r.schedule_id = s.id AND s.buffered_at IS NOT NULL
          AND EXISTS (SELECT 1 FROM workflows w
                      WHERE w.id = r.workflow_id AND w.status IN ('pending', 'running')))
           AS open_runs
FROM schedules s
WHERE s.workflow_name IN (SELECT value FROM json_each(:names)) AND NOT s.paused
  AND (s.next_due_at <= :now OR s.buffered_at IS NOT NULL)
ORDER BY s.next_due_at;

-- name: next_schedule_due
SELECT min(s.next_due_at) AS due FROM schedules s
WHERE s.workflow_name IN (SELECT value FROM json_each(:names)) AND NOT s.paused
  AND s.next_due_at > :now;
