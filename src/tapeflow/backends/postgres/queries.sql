-- name: create_workflows
-- Many workflows, each with its task and its start event, in one statement; the ids that
-- come back are those created (the others were taken). The start event is built here
-- because its time is the database's.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::text[], %(names)s::text[], %(versions)s::text[],
                         %(args)s::text[], %(start_ats)s::timestamptz[])
        AS u (id, name, version, args, start_at)
), created AS (
    INSERT INTO workflows (id, name, version, status, args, start_at)
    SELECT id, name, version, 'pending', args::json, coalesce(start_at, now()) FROM input
    ON CONFLICT (id) DO NOTHING
    RETURNING id, name, version, args, start_at
), task AS (
    INSERT INTO workflow_tasks (workflow_id, name) SELECT id, name FROM created
), started AS (
    INSERT INTO inbox (workflow_id, visible_at, event)
    SELECT id, start_at,
           json_build_object('name', name, 'version', version, 'args', args,
                             'started_at', start_at, 'kind', 'workflow_started')
    FROM created
)
SELECT id FROM created;

-- name: notify
-- Wake-ups, sent after the commit that made the work: this transaction writes nothing, so
-- it does not wait for a WAL flush while it holds the lock that NOTIFY takes.
SELECT pg_notify(%(channel)s, topic) FROM unnest(%(topics)s::text[]) AS topic;

-- name: send_event
-- One statement: the event is appended only to a workflow still running; the status comes
-- back either way (and whether it was delivered), no row meaning no such workflow. It is
-- not seen before the workflow starts: its history begins with its start.
WITH target AS (
    SELECT id, name, status, start_at FROM workflows WHERE id = %(id)s FOR SHARE
), delivered AS (
    INSERT INTO inbox (workflow_id, visible_at, event)
    SELECT id, greatest(now(), start_at), %(event)s::json FROM target
    WHERE status IN ('pending', 'running')
    RETURNING workflow_id
)
SELECT t.status, t.name, EXISTS (SELECT FROM delivered) FROM target t;

-- name: get_workflow
SELECT w.id, w.name, w.version, w.status, w.args::text, w.created_at, w.start_at,
       w.completed_at, w.result::text, w.failure::text, w.history_length, t.last_error,
       w.start_at <= now(), extract(epoch FROM now() - p.last_poll_at)
FROM workflows w LEFT JOIN workflow_tasks t ON t.workflow_id = w.id
    LEFT JOIN pollers p ON p.kind = 'workflow' AND p.name = w.name
WHERE w.id = %(id)s;

-- name: load_history
SELECT event::text FROM history WHERE workflow_id = %(id)s ORDER BY seq;

-- name: workflow_exists
SELECT 1 FROM workflows WHERE id = %(id)s;

-- name: claim_workflow_tasks
-- See the function in functions.sql: it leases, then reads what it leased.
SELECT * FROM claim_workflow_tasks(
    %(names)s::text[], %(owner)s::text, %(lease)s::interval, %(limit)s::integer,
    %(sticky)s::interval, %(polled)s::text[]);

-- name: abandon_workflow_task
-- Fenced: touches the row only while the caller's lease holds; no row changed means the
-- lease was lost (so for retry_activity_task).
UPDATE workflow_tasks
SET lease_owner = NULL, lease_expires_at = NULL, not_before = now() + %(delay)s,
    failures = failures + (%(error)s::text IS NOT NULL)::integer,
    last_error = coalesce(%(error)s, last_error)
WHERE workflow_id = %(id)s AND lease_token = %(token)s AND lease_expires_at > now();

-- name: claim_activity_tasks
WITH polled AS (
    INSERT INTO pollers (kind, name, last_poll_at)
    SELECT 'activity', n, now() FROM unnest(%(polled)s::text[]) AS n
    ON CONFLICT (kind, name) DO UPDATE SET last_poll_at = excluded.last_poll_at
), ready AS (
    SELECT id FROM activity_tasks
    WHERE name = ANY(%(names)s)
      AND visible_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at <= now())
    ORDER BY visible_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE activity_tasks a
SET lease_owner = %(owner)s, lease_token = a.lease_token + 1,
    lease_expires_at = now() + %(lease)s, attempt = a.attempt + 1
FROM ready
WHERE a.id = ready.id
RETURNING a.id, a.workflow_id, a.seq, a.name, a.args::text, a.retry::text, a.attempt,
    a.lease_token, (SELECT w.name FROM workflows w WHERE w.id = a.workflow_id),
    a.heartbeat_details::text;

-- name: reclaim_workflow_task
UPDATE workflow_tasks t
SET lease_token = t.lease_token + 1, lease_expires_at = now() + %(lease)s
WHERE t.workflow_id = %(id)s AND t.lease_owner = %(owner)s AND t.lease_expires_at > now()
RETURNING t.workflow_id, t.name, t.lease_token, t.failures, now(),
    (SELECT w.history_length FROM workflows w WHERE w.id = t.workflow_id),
    ARRAY(SELECT e.id FROM inbox e
          WHERE e.workflow_id = t.workflow_id AND e.visible_at <= now() ORDER BY e.id),
    ARRAY(SELECT e.event::text FROM inbox e
          WHERE e.workflow_id = t.workflow_id AND e.visible_at <= now() ORDER BY e.id);

-- name: reclaim_eager_activities
UPDATE activity_tasks a
SET lease_token = a.lease_token + 1, lease_expires_at = now() + %(lease)s
WHERE a.workflow_id = %(workflow_id)s AND a.seq = ANY(%(seqs)s) AND a.lease_owner = %(owner)s
  AND a.attempt = 1 AND a.lease_expires_at > now()
RETURNING a.id, a.workflow_id, a.seq, a.name, a.args::text, a.retry::text, a.attempt,
    a.lease_token, (SELECT w.name FROM workflows w WHERE w.id = a.workflow_id),
    a.heartbeat_details::text;

-- name: commit_workflow_tasks
SELECT commit_workflow_tasks(%(tasks)s::json);

-- name: complete_activity_tasks
SELECT complete_activity_tasks(%(items)s::json);

-- name: retry_activity_task
UPDATE activity_tasks
SET lease_owner = NULL, lease_expires_at = NULL, visible_at = now() + %(delay)s,
    last_failure = %(failure)s::json,
    heartbeat_details = coalesce(%(details)s::json, heartbeat_details)
WHERE id = %(id)s AND lease_token = %(token)s AND lease_expires_at > now();

-- name: extend_workflow_leases
-- Rows are locked in id order, as the batched writes lock them, so the two never deadlock.
WITH held AS (
    SELECT t.workflow_id
    FROM workflow_tasks t JOIN unnest(%(ids)s::text[], %(tokens)s::bigint[]) AS r (id, token)
        ON t.workflow_id = r.id AND t.lease_token = r.token
    WHERE t.lease_expires_at > now()
    ORDER BY t.workflow_id
    FOR NO KEY UPDATE OF t
)
UPDATE workflow_tasks t SET lease_expires_at = now() + %(lease)s
FROM held WHERE t.workflow_id = held.workflow_id
RETURNING t.workflow_id;

-- name: extend_activity_leases
WITH held AS (
    SELECT a.id, r.details
    FROM activity_tasks a
        JOIN unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(details)s::text[])
            AS r (id, token, details) ON a.id = r.id AND a.lease_token = r.token
    WHERE a.lease_expires_at > now()
    ORDER BY a.workflow_id, a.id
    FOR NO KEY UPDATE OF a
)
UPDATE activity_tasks a
SET lease_expires_at = now() + %(lease)s,
    heartbeat_details = coalesce(held.details::json, a.heartbeat_details)
FROM held WHERE a.id = held.id
RETURNING a.id::text;

-- name: next_due_workflow
SELECT extract(epoch FROM min(greatest(
    e.visible_at + CASE WHEN t.sticky_owner IS NULL OR t.sticky_owner = %(owner)s
                        THEN interval '0' ELSE %(sticky)s END,
    t.not_before, coalesce(t.lease_expires_at, '-infinity'))) - now())
FROM inbox e JOIN workflow_tasks t ON t.workflow_id = e.workflow_id
WHERE t.name = ANY(%(names)s);

-- name: next_due_activity
SELECT extract(epoch FROM min(greatest(visible_at, coalesce(lease_expires_at, '-infinity')))
               - now())
FROM activity_tasks
WHERE name = ANY(%(names)s);
