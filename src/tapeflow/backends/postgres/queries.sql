-- name: start_workflows
-- Many client starts in one statement (see start_runs in functions.sql).
SELECT created, settled FROM start_runs(%(runs)s::json, %(later)s::json);

-- name: notify
-- Wake-ups, sent after the commit that made the work: this transaction writes nothing, so
-- it does not wait for a WAL flush while it holds the lock that NOTIFY takes. Each payload
-- is '<sender>|<topic>': the sending backend has woken its own watchers already and skips
-- its echo (see PostgresBackend._listen).
SELECT pg_notify(%(channel)s, %(sender)s || '|' || topic)
FROM unnest(%(topics)s::text[]) AS topic;

-- name: send_event
-- To the workflow's latest run, if unfinished, once per key (see send_event in
-- functions.sql); no row means no such workflow.
SELECT status, name, delivered, fresh
FROM send_event(%(id)s, %(event)s::json, %(key)s::text);

-- name: request_update
-- See request_update in functions.sql; no row means no such workflow.
SELECT status, name, fresh FROM request_update(%(id)s, %(update_id)s, %(event)s::json);

-- name: get_update
-- The update sent to the workflow id, and the status of the run it went to.
SELECT u.run_id, u.outcome::text AS outcome, w.status AS run_status
FROM updates u JOIN workflows w ON w.run_id = u.run_id
WHERE u.workflow_id = %(id)s AND u.update_id = %(update_id)s;

-- name: request_cancel
-- See request_cancel in functions.sql; no row means no such workflow.
SELECT status, name, asked FROM request_cancel(%(id)s, %(event)s::json, %(reason)s);

-- name: get_workflow
-- The run named, or else the latest run of the id.
SELECT w.id, w.run_id, w.name, w.version, w.status, w.args::text AS args, w.created_at,
       w.start_at, w.completed_at, w.result::text AS result, w.failure::text AS failure,
       w.history_length, t.last_error, w.stop_reason, w.stop_requested_by,
       w.start_at <= now() AS due,
       extract(epoch FROM now() - p.last_poll_at) AS silent_for,
       w.parent_id, w.parent_run_id, w.parent_seq, w.on_parent_close,
       w.vars::text AS vars, w.queue, w.priority, t.admitted,
       (SELECT b.run_id FROM workflows b
        WHERE b.id = w.id AND b.run_number = w.run_number - 1) AS previous_run_id
FROM workflows w LEFT JOIN workflow_tasks t ON t.run_id = w.run_id
    LEFT JOIN pollers p ON p.kind = 'workflow' AND p.name = w.name
WHERE w.run_id = chosen_run(%(id)s, %(run_id)s);

-- name: list_pollers
SELECT kind, name, last_poll_at FROM pollers ORDER BY kind, name;

-- name: load_history
-- The history of the run named, or else of the latest run of the id: no row means no such
-- run, one row with a NULL event an empty history.
SELECT h.event::text AS event
FROM (SELECT chosen_run(%(id)s, %(run_id)s) AS run_id) AS w
    LEFT JOIN history h ON h.run_id = w.run_id
WHERE w.run_id IS NOT NULL
ORDER BY h.seq;

-- name: claim_workflow_tasks
-- See the function in functions.sql: it leases, then reads what it leased.
--
-- A claim's commit does not wait for its WAL flush (synchronous_commit off for its own
-- transaction): a claim only leases. If the server crashes before the flush, the lease is
-- gone and the task is claimed again, as a dead worker's is; every later durable commit
-- (the task's outcome above all) flushes the WAL up to it, claim included, so nothing
-- durable rests on a lost claim. It saves one flush of the four on the path from a
-- workflow's start to its result.
SELECT task FROM claim_workflow_tasks(
    %(names)s::text[], %(owner)s::text, %(lease)s::interval, %(limit)s::integer,
    %(sticky)s::interval, %(polled)s::text[], %(queues)s::text[]) AS task,
    set_config('synchronous_commit', 'off', true) AS async_commit;

-- name: abandon_workflow_task
-- Fenced: touches the row only while the caller's lease holds; no row changed means the
-- lease was lost (so for retry_activity_task).
UPDATE workflow_tasks
SET lease_owner = NULL, lease_expires_at = NULL, not_before = now() + %(delay)s,
    failures = failures + (%(error)s::text IS NOT NULL)::integer,
    last_error = coalesce(%(error)s, last_error)
WHERE run_id = %(run_id)s AND lease_token = %(token)s AND lease_expires_at > now();

-- name: claim_activity_tasks
-- Lease up to %(limit)s due activity tasks of these names, counting an attempt each, in
-- one statement (RETURNING gives the rows as leased); the names in %(polled)s (none, most
-- times) are recorded as polled for now. Its commit does not wait for its WAL flush, as
-- for claim_workflow_tasks; an attempt a crash forgets is counted again.
WITH polled AS (
    INSERT INTO pollers (kind, name, last_poll_at)
    SELECT 'activity', n, now() FROM unnest(%(polled)s::text[]) AS n
    ON CONFLICT (kind, name) DO UPDATE SET last_poll_at = excluded.last_poll_at
), ready AS (
    SELECT id FROM activity_tasks
    WHERE name = ANY (%(names)s::text[]) AND admitted AND queue = ANY (%(queues)s::text[])
      AND visible_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at <= now())
    ORDER BY visible_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE activity_tasks a
SET lease_owner = %(owner)s, lease_token = a.lease_token + 1,
    lease_expires_at = now() + %(lease)s, attempt = a.attempt + 1
FROM ready, workflows w, set_config('synchronous_commit', 'off', true) AS async_commit
WHERE a.id = ready.id AND w.run_id = a.run_id
RETURNING a.id, w.id AS workflow_id, a.run_id, w.name AS workflow_name, a.seq, a.name,
    a.args::text AS args, a.retry::text AS retry, a.attempt, a.lease_token,
    a.heartbeat_details::text AS heartbeat_details, a.timeouts::text AS timeouts,
    a.trace_context::text AS trace_context, now() AS leased_at, a.queue, w.queue AS workflow_queue, w.priority AS workflow_priority;

-- name: activity_task_exists
SELECT EXISTS (SELECT FROM activity_tasks WHERE id = %(id)s) AS found;

-- name: reclaim
SELECT reclaim(%(run_id)s::text, %(take)s::json) AS reclaimed;

-- name: commit_workflow_tasks
SELECT commit_workflow_tasks(%(items)s::jsonb) AS outcomes;

-- name: complete_activity_tasks
SELECT complete_activity_tasks(%(items)s::jsonb) AS outcomes;

-- name: retry_activity_task
-- In a queue with limits, the next attempt waits for an admission of its own.
UPDATE activity_tasks
SET lease_owner = NULL, lease_expires_at = NULL, visible_at = now() + %(delay)s,
    last_failure = %(failure)s::json,
    heartbeat_details = coalesce(%(details)s::json, heartbeat_details),
    admitted = CASE WHEN queue = 'default' THEN true ELSE admits(queue) END
WHERE id = %(id)s AND lease_token = %(token)s AND lease_expires_at > now();

-- name: extend_workflow_leases
-- Rows are locked in run id order, as the batched writes lock them (sorted in Python: by
-- code point, which is collation "C"), so the two never deadlock.
WITH held AS (
    SELECT t.run_id
    FROM workflow_tasks t JOIN unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS r (id, token)
        ON t.run_id = r.id AND t.lease_token = r.token
    WHERE t.lease_expires_at > now()
    ORDER BY t.run_id COLLATE "C"
    FOR NO KEY UPDATE OF t
)
UPDATE workflow_tasks t SET lease_expires_at = now() + %(lease)s
FROM held WHERE t.run_id = held.run_id
RETURNING t.run_id AS id;

-- name: extend_activity_leases
WITH held AS (
    SELECT a.id, r.details
    FROM activity_tasks a
        JOIN unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(details)s::text[])
            AS r (id, token, details) ON a.id = r.id AND a.lease_token = r.token
    WHERE a.lease_expires_at > now()
    ORDER BY a.run_id COLLATE "C", a.id
    FOR NO KEY UPDATE OF a
)
UPDATE activity_tasks a
SET lease_expires_at = now() + %(lease)s,
    heartbeat_details = coalesce(held.details::json, a.heartbeat_details)
FROM held WHERE a.id = held.id
RETURNING a.id::text AS id;

-- name: next_due_workflow
SELECT extract(epoch FROM min(greatest(
    e.visible_at + CASE WHEN t.sticky_owner IS NULL OR t.sticky_owner = %(owner)s
                        THEN interval '0' ELSE %(sticky)s END,
    t.not_before, coalesce(t.lease_expires_at, '-infinity'))) - now()) AS seconds
FROM inbox e JOIN workflow_tasks t ON t.run_id = e.run_id
WHERE t.name = ANY(%(names)s) AND t.admitted AND t.queue = ANY(%(queues)s);

-- name: next_due_activity
SELECT extract(epoch FROM min(greatest(visible_at, coalesce(lease_expires_at, '-infinity')))
               - now()) AS seconds
FROM activity_tasks
WHERE name = ANY(%(names)s) AND admitted AND queue = ANY(%(queues)s);

-- name: reset_run
SELECT reset_run(%(reset)s::jsonb) AS outcome;

-- name: delete_workflow
SELECT delete_workflow(%(id)s) AS status;

-- name: delete_closed
SELECT delete_closed(%(older_than)s::interval, %(limit)s::integer) AS deleted;

-- name: list_runs
-- A page of runs, newest first, of those the filters take: the filter_ fragments below,
-- joined by AND in place of the comment after WHERE (see tapeflow.backends._visibility).
SELECT w.id, w.run_id, w.name, w.status, w.created_at, w.start_at, w.completed_at,
       t.last_error, w.vars::text AS vars
FROM workflows w LEFT JOIN workflow_tasks t ON t.run_id = w.run_id
WHERE /* filters */
ORDER BY w.created_at DESC, w.run_id DESC
LIMIT %(limit)s;

-- name: count_runs
SELECT w.status, count(*) AS n FROM workflows w WHERE /* filters */ GROUP BY w.status;

-- name: filter_status
w.status = %(status)s

-- name: filter_statuses
w.status = ANY (%(statuses)s::text[])

-- name: filter_name
w.name = %(name)s

-- name: filter_id_from
w.id COLLATE "C" >= %(id_from)s

-- name: filter_id_to
w.id COLLATE "C" < %(id_to)s

-- name: filter_created_after
w.created_at >= %(created_after)s

-- name: filter_created_before
w.created_at < %(created_before)s

-- name: filter_vars
w.vars @> %(vars)s::jsonb
AND NOT EXISTS (SELECT FROM jsonb_each(%(vars)s::jsonb) AS f (key, value)
                WHERE w.vars -> f.key IS DISTINCT FROM f.value)

-- name: filter_latest
NOT EXISTS (SELECT FROM workflows n WHERE n.id = w.id AND n.run_number > w.run_number)

-- name: filter_after
(w.created_at, w.run_id) < (%(after_at)s, %(after_run)s)

-- name: report_worker
-- The worker runs now, and workers silent for long are forgotten, in one statement.
WITH forgotten AS (
    DELETE FROM workers WHERE last_seen_at < now() - %(forget)s AND id <> %(id)s
)
INSERT INTO workers (id, info, started_at, last_seen_at) VALUES (%(id)s, %(info)s::jsonb, now(), now())
ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen_at = excluded.last_seen_at,
    stopped_at = NULL;

-- name: report_worker_stopped
UPDATE workers SET last_seen_at = now(), stopped_at = now() WHERE id = %(id)s;

-- name: list_workers
SELECT id, info::text AS info, started_at, last_seen_at, stopped_at,
       extract(epoch FROM now() - last_seen_at) AS silent_for
FROM workers WHERE last_seen_at >= now() - %(within)s ORDER BY started_at DESC, id;

-- name: declare_queue
-- The declaration replaced (none for a queue new here) and the new one stored.
WITH before AS (
    SELECT name, concurrency, rate_limit, rate_period FROM queues WHERE name = %(name)s
    FOR UPDATE
), stored AS (
    INSERT INTO queues (name, concurrency, rate_limit, rate_period)
    VALUES (%(name)s, %(concurrency)s, %(rate_limit)s, %(rate_period)s)
    ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
        rate_limit = excluded.rate_limit, rate_period = excluded.rate_period,
        declared_at = now()
)
SELECT name, concurrency, rate_limit, rate_period FROM before;

-- name: admit_queue
SELECT admit_queue(%(kind)s, %(queue)s, %(names)s::text[], %(owner)s, %(lease)s::interval,
                   %(limit)s::integer) AS admitted;

-- name: list_queues
-- The queues declared, and those other than the default holding work, with the counts.
SELECT n.name, q.concurrency, q.rate_limit, q.rate_period,
       (SELECT count(*) FROM workflow_tasks WHERE queue = n.name AND admitted)
     + (SELECT count(*) FROM activity_tasks WHERE queue = n.name AND admitted) AS admitted,
       (SELECT count(*) FROM workflow_tasks WHERE queue = n.name AND NOT admitted)
     + (SELECT count(*) FROM activity_tasks WHERE queue = n.name AND NOT admitted) AS waiting,
       (SELECT count(*) FROM queue_starts s
        WHERE s.queue = n.name AND s.started_at > now() - q.rate_period) AS started
FROM (SELECT name FROM queues
      UNION SELECT queue FROM workflow_tasks WHERE queue <> 'default'
      UNION SELECT queue FROM activity_tasks WHERE queue <> 'default') AS n
    LEFT JOIN queues q ON q.name = n.name
ORDER BY n.name;

-- name: insert_schedule
-- No row: the id is taken.
INSERT INTO schedules (id, workflow_name, args, cron, every, timezone, overlap,
                       catchup_window, paused, next_due_at, buffered_at, skipped_catchup,
                       skipped_overlap)
VALUES (%(id)s, %(workflow_name)s, %(args)s::json, %(cron)s, %(every)s, %(timezone)s,
        %(overlap)s, %(catchup_window)s, %(paused)s, %(next_due_at)s, %(buffered_at)s,
        %(skipped_catchup)s, %(skipped_overlap)s)
ON CONFLICT (id) DO NOTHING
RETURNING created_at, updated_at;

-- name: database_now
SELECT now() AS now;

-- name: lock_schedule
-- The schedule's row, locked until the transaction ends, and the time it was had.
SELECT s.*, clock_timestamp() AS now FROM schedules s WHERE s.id = %(id)s FOR UPDATE;

-- name: lock_due_schedules
-- The rows of these schedules that no other transaction holds, locked until this one
-- ends (the others skipped: a firing never waits for another worker's), with the time
-- and, read in the same statement since it did not wait, the open runs of each (as
-- open_schedule_runs).
SELECT s.*, clock_timestamp() AS now,
       ARRAY(SELECT r.workflow_id FROM schedule_runs r
             WHERE r.schedule_id = s.id
               AND EXISTS (SELECT FROM workflows w
                           WHERE w.id = r.workflow_id AND w.status IN ('pending', 'running'))
             ORDER BY r.started_at, r.workflow_id) AS open_runs
FROM schedules s WHERE s.id = ANY (%(ids)s::text[])
ORDER BY s.id
FOR UPDATE OF s SKIP LOCKED;

-- name: open_schedule_runs
-- The workflows the schedule started whose latest run is open, oldest first (after
-- lock_schedule, in a statement of its own: its snapshot is taken once the lock is held,
-- which may have waited for another transaction).
SELECT r.workflow_id FROM schedule_runs r
WHERE r.schedule_id = %(id)s
  AND EXISTS (SELECT FROM workflows w
              WHERE w.id = r.workflow_id AND w.status IN ('pending', 'running'))
ORDER BY r.started_at, r.workflow_id;

-- name: create_scheduled_runs
-- The workflows of due times (see create_runs in functions.sql): the run ids created.
SELECT c AS run_id FROM create_runs(%(runs)s::json) AS c;

-- name: store_schedules
-- Schedules' rows as decided, from items {"id", the columns, "runs": [{"workflow_id",
-- "due_at"}] started, "open": [workflow ids]}: each row updated, the runs recorded, and of
-- the runs recorded before, all but the newest KEEP_RUNS of each schedule and its open
-- ones forgotten.
WITH item AS (
    SELECT * FROM json_to_recordset(%(items)s::json)
        AS i (id text, args json, cron text, every interval, timezone text, overlap text,
              catchup_window interval, paused boolean, next_due_at timestamptz,
              buffered_at timestamptz, skipped_catchup integer, skipped_overlap integer,
              runs json, open json)
), updated AS (
    UPDATE schedules s
    SET args = i.args, cron = i.cron, every = i.every, timezone = i.timezone,
        overlap = i.overlap, catchup_window = i.catchup_window, paused = i.paused,
        next_due_at = i.next_due_at, buffered_at = i.buffered_at,
        skipped_catchup = i.skipped_catchup, skipped_overlap = i.skipped_overlap,
        updated_at = now()
    FROM item i WHERE s.id = i.id
), pruned AS (
    DELETE FROM schedule_runs r
    USING (SELECT x.schedule_id, x.workflow_id
           FROM (SELECT o.schedule_id, o.workflow_id,
                        row_number() OVER (PARTITION BY o.schedule_id
                                           ORDER BY o.started_at DESC, o.workflow_id DESC) AS n
                 FROM schedule_runs o WHERE o.schedule_id IN (SELECT id FROM item)) AS x
           WHERE x.n > %(keep)s) AS old
    WHERE r.schedule_id = old.schedule_id AND r.workflow_id = old.workflow_id
      AND NOT EXISTS (SELECT FROM item i, json_array_elements_text(i.open) AS o (workflow_id)
                      WHERE i.id = r.schedule_id AND o.workflow_id = r.workflow_id)
)
INSERT INTO schedule_runs (schedule_id, workflow_id, due_at, started_at)
SELECT i.id, r.workflow_id, r.due_at, now()
FROM item i, json_to_recordset(i.runs) AS r (workflow_id text, due_at timestamptz)
ON CONFLICT DO NOTHING;

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s;

-- name: list_schedules
SELECT * FROM schedules ORDER BY id;

-- name: schedule_runs
-- The runs recorded of these schedules, the newest first, each with its latest run's
-- status (NULL: deleted).
SELECT r.schedule_id, r.workflow_id, r.due_at, r.started_at, w.status
FROM schedule_runs r
     LEFT JOIN LATERAL (SELECT w.status FROM workflows w WHERE w.id = r.workflow_id
                        ORDER BY w.run_number DESC LIMIT 1) AS w ON true
WHERE r.schedule_id = ANY (%(ids)s::text[])
ORDER BY r.schedule_id, r.started_at DESC, r.workflow_id DESC;

-- name: delete_schedule
-- No row: no such schedule.
WITH gone AS (DELETE FROM schedules WHERE id = %(id)s RETURNING id),
     runs AS (DELETE FROM schedule_runs WHERE schedule_id IN (SELECT id FROM gone))
SELECT id FROM gone;

-- name: due_schedules
-- For a firing loop: the unpaused schedules of these workflows due now (the most overdue
-- first), the seconds until the next of the others, and each schedule holding a buffered
-- due time with the open runs it waits for ([id, [workflow ids]]).
SELECT ARRAY(SELECT s.id FROM schedules s
             WHERE s.workflow_name = ANY (%(names)s::text[]) AND NOT s.paused
               AND s.next_due_at <= now()
             ORDER BY s.next_due_at LIMIT %(limit)s) AS due,
       (SELECT extract(epoch FROM min(s.next_due_at) - now()) FROM schedules s
        WHERE s.workflow_name = ANY (%(names)s::text[]) AND NOT s.paused
          AND s.next_due_at > now()) AS seconds,
       ARRAY(SELECT json_build_array(s.id, ARRAY(
                 SELECT r.workflow_id FROM schedule_runs r
                 WHERE r.schedule_id = s.id
                   AND EXISTS (SELECT FROM workflows w
                               WHERE w.id = r.workflow_id
                                 AND w.status IN ('pending', 'running'))))
             FROM schedules s
             WHERE s.workflow_name = ANY (%(names)s::text[]) AND NOT s.paused
               AND s.buffered_at IS NOT NULL) AS buffering;
