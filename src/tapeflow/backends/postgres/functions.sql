-- The PL/pgSQL functions, kept apart from the numbered migrations (which hold tables and
-- data only). The backend applies this whole file, under the migration lock, whenever its
-- checksum differs from the one recorded in schema_functions, so a change here is a change
-- of this file alone. A change of a function's signature or return type must DROP it first.
-- Raise the revision below with every change: a process whose file has a lower revision
-- than the one applied leaves the newer functions in place (a rolling upgrade).
-- revision: 18
--
-- Every function runs with enable_seqscan off. They only ever reach rows by key, and
-- PL/pgSQL keeps a session's plans: planned while the tables were nearly empty (a new
-- schema, the first minute of a deployment), a plan would scan the whole queue table on
-- every call until an ANALYZE happened to replace it.
--
-- What they take and give is JSON: a task's commit is tapeflow.backends.plan.CommitPlan's
-- as_json(), stored as that module's docstring says, without knowing which decisions made
-- it. A write that may be refused returns {"refused": null, ...} or {"refused": code}, the
-- code one of "lease_lost", "gone" (an activity task that no longer exists),
-- "history_moved", "unseen_events" (then nothing was written) or
-- "failed" (with "error": the database's message; its savepoint was rolled back). A
-- "take" is {"owner", "lease" (an interval), "activities" (seqs)}: what the writing worker
-- leases to itself in the same transaction (tapeflow.backends.base.Take).

-- Return types changed in revision 5 (rows became JSON).
DROP FUNCTION IF EXISTS claim_workflow_tasks(text[], text, interval, integer, interval, text[]);
-- Revision 6: one read for many runs' tasks. (The functions below are PL/pgSQL, whose
-- statements' plans are kept for the session, where an SQL function's are made anew at
-- every call.)
DROP FUNCTION IF EXISTS leased_task(text);
DROP FUNCTION IF EXISTS claim_activity_tasks(text[], text, interval, integer, text[]);  -- a query
-- Revision 6: batches come as jsonb, parsed once, and plans go on as parsed.
DROP FUNCTION IF EXISTS commit_workflow_tasks(json);
DROP FUNCTION IF EXISTS complete_activity_tasks(json);
DROP FUNCTION IF EXISTS apply_plan(text, bigint, integer, json, json);
-- Revision 10: a new run's id_reuse decides (no p_next); deliveries to a given run.
DROP FUNCTION IF EXISTS create_runs(json, boolean);
DROP FUNCTION IF EXISTS deliver(text, json, timestamptz, integer);

-- A JSON array of integers (or null) as an SQL array.
CREATE OR REPLACE FUNCTION json_ints(p_array json) RETURNS bigint[]
LANGUAGE sql IMMUTABLE
AS $$
SELECT ARRAY(SELECT json_array_elements_text(coalesce(p_array, '[]'))::bigint);
$$;

CREATE OR REPLACE FUNCTION jsonb_ints(p_array jsonb) RETURNS bigint[]
LANGUAGE sql IMMUTABLE
AS $$
SELECT ARRAY(SELECT jsonb_array_elements_text(coalesce(p_array, '[]'))::bigint);
$$;

-- The run a read names: p_run_id if it is one of workflow p_id's runs, else (p_run_id
-- null) p_id's latest; null if there is none. A function, so that each case is a plan of
-- its own: one query for both ("p_run_id IS NULL OR run_id = p_run_id") is planned anew at
-- every call, which costs more than running it.
CREATE OR REPLACE FUNCTION chosen_run(p_id text, p_run_id text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
BEGIN
    IF p_run_id IS NULL THEN
        RETURN (SELECT w.run_id FROM workflows w WHERE w.id = p_id
                ORDER BY w.run_number DESC LIMIT 1);
    END IF;
    RETURN (SELECT w.run_id FROM workflows w WHERE w.run_id = p_run_id AND w.id = p_id);
END
$$;

-- Record that workers claimed these names now (see tapeflow.backends._pollers); the names
-- come sorted, so concurrent claims lock the rows in one order.
CREATE OR REPLACE FUNCTION record_polls(p_kind text, p_names text[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
BEGIN
    IF cardinality(p_names) > 0 THEN  -- most claims have none to record
        INSERT INTO pollers (kind, name, last_poll_at)
        SELECT p_kind, n, now() FROM unnest(p_names) AS n
        ON CONFLICT (kind, name) DO UPDATE SET last_poll_at = excluded.last_poll_at;
    END IF;
END
$$;

-- The runs' workflow tasks as a worker gets them, each with its visible inbox:
-- {"workflow_id", "run_id", "name", "history_length", "lease_token", "failures",
-- "claimed_at", "parent": null or [id, run id, seq, on close], "queue", "priority",
-- "inbox": [[id, event text], ...]}. Read in a statement of its own after the
-- lease (see claim_workflow_tasks). A run without a task gives nothing.
CREATE OR REPLACE FUNCTION leased_tasks(p_run_ids text[]) RETURNS SETOF json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
BEGIN
RETURN QUERY
SELECT json_build_object(
    'workflow_id', w.id, 'run_id', t.run_id, 'name', t.name,
    'history_length', w.history_length, 'lease_token', t.lease_token,
    'failures', t.failures, 'claimed_at', now(),
    'parent', CASE WHEN w.parent_run_id IS NOT NULL THEN json_build_array(
        w.parent_id, w.parent_run_id, w.parent_seq, w.on_parent_close) END,
    'queue', t.queue, 'priority', t.priority,
    'inbox', coalesce(
        (SELECT json_agg(json_build_array(e.id, e.event::text) ORDER BY e.id)
         FROM inbox e WHERE e.run_id = t.run_id AND e.visible_at <= now()),
        '[]'))
FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
WHERE t.run_id = ANY (p_run_ids);
END
$$;

-- Activity tasks as a worker gets them (the columns of tapeflow.backends._rows.activity_task,
-- JSON as text), in id order.
CREATE OR REPLACE FUNCTION leased_activities(p_ids bigint[]) RETURNS SETOF json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
BEGIN
RETURN QUERY
SELECT json_build_object(
    'id', a.id, 'workflow_id', w.id, 'run_id', a.run_id, 'workflow_name', w.name,
    'seq', a.seq, 'name', a.name, 'args', a.args::text, 'retry', a.retry::text,
    'attempt', a.attempt, 'lease_token', a.lease_token,
    'heartbeat_details', a.heartbeat_details::text, 'timeouts', a.timeouts::text,
    'trace_context', a.trace_context::text, 'leased_at', now(), 'queue', a.queue, 'workflow_queue', w.queue,
    'workflow_priority', w.priority)
FROM activity_tasks a JOIN workflows w ON w.run_id = a.run_id
WHERE a.id = ANY (p_ids)
ORDER BY a.id;
END
$$;

-- Whether work of the queue is admitted as it is written: a queue without limits (see
-- migration 0015). The default queue has none: callers test for it first, in a CASE,
-- so that work there costs no call.
CREATE OR REPLACE FUNCTION admits(p_queue text) RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
SELECT p_queue = 'default' OR NOT EXISTS (
    SELECT FROM queues q
    WHERE q.name = p_queue AND (q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL));
$$;

-- Whether a new run may follow an id's latest run, in p_status, by p_reuse (a new run's
-- "id_reuse"): never after an unfinished one; after an ended one, as
-- tapeflow.backends.base.IdReuse says.
CREATE OR REPLACE FUNCTION reusable(p_status text, p_reuse text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
SELECT p_status NOT IN ('pending', 'running')
       AND (p_reuse = 'allow' OR (p_reuse = 'allow_failed' AND p_status <> 'completed'));
$$;

-- Create runs, each with its workflow task, its start event (built here, because its time
-- is the database's) and its other "events" after it, and, with an "execution_timeout"
-- (seconds), its ExecutionTimeoutReached timer, from tapeflow.backends.plan's
-- new_workflow_json rows; returns the run ids created. A run is made as the next of its
-- id unless the id is taken: its latest run is unfinished, or has ended and "id_reuse"
-- does not allow another ("reject" never does, "allow_failed" only after a run that did
-- not complete). Runs of one id made at once collide on (id, run_number), and only the
-- first is made. Rows are written in id order, so concurrent batches never deadlock.
CREATE OR REPLACE FUNCTION create_runs(p_runs json) RETURNS SETOF text
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
BEGIN
RETURN QUERY
WITH input AS (
    SELECT r.*, r.parent ->> 'workflow_id' AS parent_id, r.parent ->> 'run_id' AS parent_run_id,
           (r.parent ->> 'seq')::integer AS parent_seq, r.parent ->> 'on_close' AS on_parent_close,
           coalesce(last.run_number, 0) + 1 AS run_number,
           last.status IS NULL OR reusable(last.status, r.id_reuse) AS free
    FROM json_to_recordset(p_runs)
            AS r (run_id text, id text, name text, version text, args text,
                  start_at timestamptz, execution_timeout double precision, id_reuse text,
                  events json, parent json, queue text, priority smallint,
                  trace_context json)
         LEFT JOIN LATERAL (  -- a run that may not follow another is run 1, or nothing
            SELECT w.run_number, w.status FROM workflows w
            WHERE r.id_reuse <> 'reject' AND w.id = r.id
            ORDER BY w.run_number DESC LIMIT 1
         ) AS last ON true
), created AS (
    INSERT INTO workflows (run_id, id, run_number, name, version, status, args, start_at,
                           parent_id, parent_run_id, parent_seq, on_parent_close, queue,
                           priority)
    SELECT run_id, id, run_number, name, version, 'pending', args::json,
           coalesce(start_at, now()), parent_id, parent_run_id, parent_seq, on_parent_close,
           queue, priority
    FROM input
    WHERE free
    ORDER BY id
    ON CONFLICT (id, run_number) DO NOTHING
    RETURNING run_id, name, version, args, start_at, queue, priority
), deadline AS (  -- timer seq 0: tapeflow.backends.base.EXECUTION_TIMEOUT_SEQ
    INSERT INTO inbox (run_id, visible_at, timer_seq, event)
    SELECT c.run_id, c.start_at + make_interval(secs => i.execution_timeout), 0,
           json_build_object('timeout', i.execution_timeout,
                             'kind', 'execution_timeout_reached')
    FROM created c JOIN input i ON i.run_id = c.run_id
    WHERE i.execution_timeout IS NOT NULL
), task AS (
    INSERT INTO workflow_tasks (run_id, name, queue, priority, admitted)
    SELECT run_id, name, queue, priority,
           CASE WHEN queue = 'default' THEN true ELSE admits(queue) END
    FROM created
), started AS (  -- in order: the start first, then the events, as given
    INSERT INTO inbox (run_id, visible_at, event)
    SELECT e.run_id, e.start_at, e.event
    FROM (
        SELECT c.run_id, c.start_at, 0::bigint AS n,
               CASE WHEN i.trace_context IS NULL
                    THEN json_build_object('name', c.name, 'version', c.version,
                                           'args', c.args, 'started_at', c.start_at,
                                           'kind', 'workflow_started')
                    ELSE json_build_object('name', c.name, 'version', c.version,
                                           'args', c.args, 'started_at', c.start_at,
                                           'trace_context', i.trace_context,
                                           'kind', 'workflow_started')
               END AS event
        FROM created c JOIN input i ON i.run_id = c.run_id
        UNION ALL
        SELECT c.run_id, c.start_at, x.n, x.event::json
        FROM created c JOIN input i ON i.run_id = c.run_id,
             json_array_elements_text(coalesce(i.events, '[]')) WITH ORDINALITY AS x (event, n)
    ) AS e
    ORDER BY e.run_id, e.n
)
SELECT c.run_id FROM created c;
END
$$;

-- Client starts (Backend.create_workflow), many in one statement, as new_workflow_json
-- rows with "use_existing": p_runs the first start of each id, made by create_runs all
-- together (the plain path, which this adds nothing to), p_later the other starts of
-- those ids, in the order they came. Every start not made then (a later one, or one whose
-- id was taken) is settled by start_run, in id order as create_runs writes. Returns the
-- run ids made, and for each start settled [its position in p_runs then p_later, from 0,
-- and what start_run returned].
CREATE OR REPLACE FUNCTION start_runs(p_runs json, p_later json)
RETURNS TABLE (created text[], settled json[])
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_start record;
BEGIN
    created := ARRAY(SELECT c FROM create_runs(p_runs) AS c);
    settled := '{}';
    IF cardinality(created) < json_array_length(p_runs) OR json_array_length(p_later) > 0 THEN
        FOR v_start IN
            SELECT x.start, x.position
            FROM (SELECT r.start, r.n - 1 AS position
                  FROM json_array_elements(p_runs) WITH ORDINALITY AS r (start, n)
                  UNION ALL
                  SELECT l.start, json_array_length(p_runs) + l.n - 1
                  FROM json_array_elements(p_later) WITH ORDINALITY AS l (start, n)) AS x
            WHERE NOT (x.start ->> 'run_id' = ANY (created))
            ORDER BY x.start ->> 'id', x.position
        LOOP
            settled := settled || json_build_array(v_start.position, start_run(v_start.start));
        END LOOP;
    END IF;
    RETURN NEXT;
END
$$;

-- One client start that create_runs did not make, against its id's latest run, locked
-- FOR SHARE as deliver locks it (a commit ending it goes first, or after this; one that
-- continued it as new made a next run, looked for again): if the id
-- is free now, it is made, unless another start takes it first (then look again), and is
-- "created"; else it is "taken" (WorkflowAlreadyExists), or with "use_existing" "found":
-- the run's, with the start's "events" put into its inbox if it is unfinished, or
-- "closed" if it has ended and there are events (nothing written). Returns [outcome,
-- run id, workflow name, status].
CREATE OR REPLACE FUNCTION start_run(p_start json) RETURNS json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_run_id text;
    v_name   text;
    v_status text;
    v_events json := coalesce(p_start -> 'events', '[]');
    v_answer text;
BEGIN
    LOOP
        SELECT w.run_id, w.name, w.status INTO v_run_id, v_name, v_status FROM workflows w
        WHERE w.id = p_start ->> 'id' ORDER BY w.run_number DESC LIMIT 1
        FOR SHARE;
        CONTINUE WHEN v_status = 'continued_as_new';  -- as in deliver: it has a next run
        IF v_status IS NULL OR reusable(v_status, p_start ->> 'id_reuse') THEN
            IF EXISTS (SELECT FROM create_runs(json_build_array(p_start))) THEN
                RETURN json_build_array(
                    'created', p_start ->> 'run_id', p_start ->> 'name', 'pending');
            END IF;
            CONTINUE;  -- another start took the id meanwhile
        END IF;
        IF NOT (p_start ->> 'use_existing')::boolean THEN
            v_answer := 'taken';
        ELSIF json_array_length(v_events) = 0 THEN
            v_answer := 'found';
        ELSIF v_status IN ('pending', 'running') THEN
            PERFORM deliver(NULL, v_run_id, e.event::json, NULL, NULL)
            FROM json_array_elements_text(v_events) WITH ORDINALITY AS e (event, n)
            ORDER BY e.n;
            v_answer := 'found';
        ELSE
            v_answer := 'closed';
        END IF;
        RETURN json_build_array(v_answer, v_run_id, v_name, v_status);
    END LOOP;
END
$$;

-- An external event for the latest run of workflow p_id, delivered as deliver does, at
-- most once per key: with a p_key the id has had, nothing is delivered ("fresh" false; a
-- send racing the first with its key waits here for it). The key is kept with the id, for
-- all its runs, only if the event is delivered. No row: no such workflow.
CREATE OR REPLACE FUNCTION send_event(p_id text, p_event json, p_key text)
RETURNS TABLE (status text, name text, delivered boolean, fresh boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
BEGIN
    IF p_key IS NOT NULL THEN
        INSERT INTO event_keys (workflow_id, key) VALUES (p_id, p_key) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            fresh := false;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    fresh := true;
    SELECT d.status, d.name, d.delivered INTO status, name, delivered
    FROM deliver(p_id, NULL, p_event, NULL, NULL) AS d;
    IF delivered IS NOT TRUE AND p_key IS NOT NULL THEN
        DELETE FROM event_keys k WHERE k.workflow_id = p_id AND k.key = p_key;
    END IF;
    IF status IS NOT NULL THEN
        RETURN NEXT;
    END IF;
END
$$;

-- Append an event to the inbox of the run p_run_id, or (p_run_id null) of the latest run
-- of workflow p_id, if that run is unfinished, visible no earlier than its start (its
-- history begins with its start), and say what was found: no row if there is no such
-- run. The run's row is locked FOR SHARE: a commit ending it that is in flight either
-- finishes first (and the event is not delivered) or sees the event (and refuses to end
-- past it).
CREATE OR REPLACE FUNCTION deliver(
    p_id text, p_run_id text, p_event json, p_visible_at timestamptz, p_timer_seq integer)
RETURNS TABLE (status text, name text, delivered boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_run record;
BEGIN
    IF p_run_id IS NULL THEN
        LOOP  -- a run found continued as new once its lock came: its next run, made by
              -- the commit waited for, is in the next statement's snapshot
            SELECT w.run_id, w.name, w.status, w.start_at INTO v_run FROM workflows w
            WHERE w.id = p_id ORDER BY w.run_number DESC LIMIT 1
            FOR SHARE;
            EXIT WHEN NOT FOUND OR v_run.status <> 'continued_as_new';
        END LOOP;
    ELSE
        SELECT w.run_id, w.name, w.status, w.start_at INTO v_run FROM workflows w
        WHERE w.run_id = p_run_id
        FOR SHARE;
    END IF;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    delivered := v_run.status IN ('pending', 'running');
    IF delivered THEN
        INSERT INTO inbox (run_id, visible_at, timer_seq, event)
        VALUES (v_run.run_id, greatest(coalesce(p_visible_at, now()), v_run.start_at),
                p_timer_seq, p_event);
    END IF;
    status := v_run.status;
    name := v_run.name;
    RETURN NEXT;
END
$$;

-- An update request (p_event) for the latest run of workflow p_id, delivered as deliver
-- does, at most once per update id: with a p_update_id the id has had, nothing is
-- delivered ("fresh" false), whatever became of that run; a request racing the first with
-- its id waits here for it. The update is kept, with the run it went to, only if it is
-- delivered. The run's row is locked before the update's, as a commit answering updates
-- locks them. No row: no such workflow.
CREATE OR REPLACE FUNCTION request_update(p_id text, p_update_id text, p_event json)
RETURNS TABLE (status text, name text, fresh boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_run record;
BEGIN
    LOOP  -- as in deliver: a run continued as new while we waited has a next run
        SELECT w.run_id, w.name, w.status, w.start_at INTO v_run FROM workflows w
        WHERE w.id = p_id ORDER BY w.run_number DESC LIMIT 1
        FOR SHARE;
        EXIT WHEN NOT FOUND OR v_run.status <> 'continued_as_new';
    END LOOP;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    status := v_run.status;
    name := v_run.name;
    IF v_run.status IN ('pending', 'running') THEN
        INSERT INTO updates (workflow_id, update_id, run_id)
        VALUES (p_id, p_update_id, v_run.run_id)
        ON CONFLICT DO NOTHING;
        fresh := FOUND;
        IF fresh THEN
            INSERT INTO inbox (run_id, visible_at, event)
            VALUES (v_run.run_id, greatest(now(), v_run.start_at), p_event);
        END IF;
    ELSE
        fresh := NOT EXISTS (
            SELECT FROM updates u WHERE u.workflow_id = p_id AND u.update_id = p_update_id);
    END IF;
    RETURN NEXT;
END
$$;

-- Ask the latest run of workflow p_id to cancel, once: if it is unfinished and was not
-- asked yet, store p_reason and deliver p_event (its WorkflowCancelRequested) as deliver
-- does. Says what was found (no row: no such workflow) and whether this call asked. The
-- run's row is locked as a commit ending it locks it: one of the two goes first.
CREATE OR REPLACE FUNCTION request_cancel(p_id text, p_event json, p_reason text)
RETURNS TABLE (status text, name text, asked boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_run record;
BEGIN
    LOOP  -- as in deliver: a run continued as new while we waited has a next run
        SELECT w.run_id, w.name, w.status, w.start_at, w.stop_requested_by INTO v_run
        FROM workflows w WHERE w.id = p_id
        ORDER BY w.run_number DESC LIMIT 1
        FOR NO KEY UPDATE;
        EXIT WHEN NOT FOUND OR v_run.status <> 'continued_as_new';
    END LOOP;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    asked := v_run.status IN ('pending', 'running') AND v_run.stop_requested_by IS NULL;
    IF asked THEN
        UPDATE workflows SET stop_reason = p_reason, stop_requested_by = 'client'
        WHERE run_id = v_run.run_id;
        INSERT INTO inbox (run_id, visible_at, event)
        VALUES (v_run.run_id, greatest(now(), v_run.start_at), p_event);
    END IF;
    status := v_run.status;
    name := v_run.name;
    RETURN NEXT;
END
$$;

-- Store a commit plan for the run's task, fenced by p_token and p_history_length, exactly
-- as tapeflow/backends/plan.py says (steps 1-7), and release the task, sticky to p_take's
-- owner (NULL: to nobody). Returns {"refused": null, "leased": [[task id, seq], ...] (the
-- new activity tasks of p_take's activities, leased to its owner, attempt 1), "wake": the
-- run's inbox is not empty (events that came while the task was held, or timers, whose
-- due time a poller may have put off while the lease was held), "woken": [names of the
-- other workflows written to]} for step 8's wake-ups, or a refusal (see the top). The
-- function's block is its savepoint: a failure undoes this plan alone.
CREATE OR REPLACE FUNCTION apply_plan(
    p_run_id text, p_token bigint, p_history_length integer, p_plan jsonb, p_take jsonb)
RETURNS json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_plan     jsonb := p_plan;
    v_ending   jsonb := CASE WHEN jsonb_typeof(v_plan -> 'ending') = 'object'
                             THEN v_plan -> 'ending' END;
    v_consumed bigint[] := jsonb_ints(v_plan -> 'consumed');
    v_history  jsonb := v_plan -> 'history';
    v_inbox    jsonb := v_plan -> 'inbox';
    v_vars     jsonb := (v_plan ->> 'vars')::jsonb;  -- null: unchanged
    v_new      integer := p_history_length + jsonb_array_length(v_history);
    v_owner    text := p_take ->> 'owner';
    v_taken    bigint[] := jsonb_ints(p_take -> 'activities');
    v_token    bigint;
    v_live     boolean;
    v_length   integer;
    v_id       text;
    v_leased   json := '[]';
    v_woken    text[] := '{}';
    v_created  text[];
    v_found    record;
    v_wake     boolean := false;
    v_row      record;
BEGIN
    -- 1. Fenced.
    SELECT t.lease_token, t.lease_expires_at > now(), w.history_length, w.id
    INTO v_token, v_live, v_length, v_id
    FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
    WHERE t.run_id = p_run_id
    FOR NO KEY UPDATE OF t, w;
    IF NOT FOUND OR (p_token IS NOT NULL  -- NULL: an imposed ending, held or not
                     AND (v_token <> p_token OR v_live IS NOT TRUE)) THEN  -- NULL: released
        RETURN json_build_object('refused', 'lease_lost');
    END IF;
    IF v_length <> p_history_length THEN
        RETURN json_build_object('refused', 'history_moved');
    END IF;
    -- 2. Ending past events the task did not see would drop them.
    IF (v_ending ->> 'by_code')::boolean AND EXISTS (
        SELECT FROM inbox
        WHERE run_id = p_run_id AND timer_seq IS NULL AND NOT (id = ANY (v_consumed))
    ) THEN
        RETURN json_build_object('refused', 'unseen_events');
    END IF;

    -- 3. (Each step below runs only when the plan has that part: a statement costs more
    -- than the look.)
    IF cardinality(v_consumed) > 0 THEN
        DELETE FROM inbox WHERE run_id = p_run_id AND id = ANY (v_consumed);
    END IF;
    INSERT INTO history (run_id, seq, event)
    SELECT p_run_id, p_history_length + u.n, u.event::json
    FROM jsonb_array_elements_text(v_history) WITH ORDINALITY AS u (event, n);
    -- The first answer stands (a reset run may answer again what its old run answered).
    IF jsonb_array_length(coalesce(v_plan -> 'updates', '[]')) > 0 THEN
        UPDATE updates u SET outcome = x.outcome::json
        FROM jsonb_to_recordset(v_plan -> 'updates') AS x (update_id text, outcome text)
        WHERE u.workflow_id = v_id AND u.update_id = x.update_id AND u.outcome IS NULL;
    END IF;

    -- 4, other runs' rows (in id order, as batches lock): kept even when this run ends (a
    -- child's end for its parent, say), their receipts only if it goes on.
    IF jsonb_path_exists(v_inbox, '$[*] ? (@.workflow_id != null || @.run_id != null)') THEN
        FOR v_row IN
            SELECT x.workflow_id, x.run_id, x.event, x.visible_at, x.timer_seq, x.receipt
            FROM jsonb_to_recordset(v_inbox)
                AS x (event text, visible_at timestamptz, timer_seq integer, workflow_id text,
                      run_id text, receipt jsonb)
            WHERE x.workflow_id IS NOT NULL OR x.run_id IS NOT NULL
            ORDER BY coalesce(x.workflow_id, x.run_id)
        LOOP
            SELECT d.status, d.name, d.delivered INTO v_found
            FROM deliver(v_row.workflow_id, v_row.run_id, v_row.event::json,
                         v_row.visible_at, v_row.timer_seq) AS d;
            IF v_found.delivered THEN
                v_woken := v_woken || v_found.name;
            END IF;
            IF v_row.receipt IS NOT NULL AND v_ending IS NULL THEN
                INSERT INTO inbox (run_id, visible_at, event)
                VALUES (p_run_id, now(), (v_row.receipt ->> CASE
                    WHEN v_found.delivered THEN 'delivered'
                    WHEN v_found.status IS NOT NULL THEN 'closed'
                    ELSE 'missing' END)::json);
            END IF;
        END LOOP;
    END IF;

    IF v_ending IS NOT NULL THEN
        -- 6, ending: the rest of steps 4 and 5 would be deleted here again.
        UPDATE workflows
        SET status = v_ending ->> 'status', result = (v_ending ->> 'result')::json,
            failure = (v_ending ->> 'failure')::json, completed_at = now(),
            history_length = v_new,
            stop_reason = coalesce(v_ending ->> 'reason', stop_reason),
            stop_requested_by = coalesce(v_ending ->> 'requested_by', stop_requested_by),
            vars = coalesce(v_vars, vars)
        WHERE run_id = p_run_id;
        DELETE FROM workflow_tasks WHERE run_id = p_run_id;
        DELETE FROM activity_tasks WHERE run_id = p_run_id;
        DELETE FROM inbox WHERE run_id = p_run_id;
        -- Its open children get its close, as their parent close policy says.
        WITH children AS (
            SELECT c.run_id, c.name, c.start_at, c.on_parent_close FROM workflows c
            WHERE c.parent_run_id = p_run_id AND c.status IN ('pending', 'running')
              AND c.on_parent_close IS NOT NULL
            ORDER BY c.run_id
            FOR SHARE
        ), told AS (
            INSERT INTO inbox (run_id, visible_at, event)
            SELECT run_id, greatest(now(), start_at), on_parent_close::json FROM children
        )
        SELECT v_woken || coalesce(array_agg(DISTINCT name), '{}') INTO v_woken FROM children;
    ELSE
        -- 4, this run's rows.
        IF jsonb_array_length(v_inbox) > 0 THEN
            INSERT INTO inbox (run_id, visible_at, timer_seq, event)
            SELECT p_run_id, coalesce(x.visible_at, now()), x.timer_seq, x.event::json
            FROM jsonb_to_recordset(v_inbox)
                AS x (event text, visible_at timestamptz, timer_seq integer, workflow_id text)
            WHERE x.workflow_id IS NULL;
        END IF;
        -- 5.
        IF jsonb_array_length(v_plan -> 'activities') > 0 THEN
            WITH created AS (
                INSERT INTO activity_tasks (run_id, seq, name, args, retry, timeouts,
                                            visible_at, lease_owner, lease_expires_at,
                                            lease_token, attempt, queue, priority, admitted,
                                            trace_context)
                SELECT p_run_id, a.seq, a.name, a.args::json, a.retry::json,
                       a.timeouts::json, now(),
                       CASE WHEN l.taken THEN v_owner END,
                       CASE WHEN l.taken THEN now() + (p_take ->> 'lease')::interval END,
                       l.taken::integer, l.taken::integer, a.queue, a.priority, l.admitted,
                       a.trace_context::json
                FROM jsonb_to_recordset(v_plan -> 'activities')
                        AS a (seq integer, name text, args text, retry text,
                              timeouts text, queue text, priority smallint,
                              trace_context text),
                     LATERAL (SELECT CASE WHEN a.queue = 'default' THEN true
                                          ELSE admits(a.queue) END AS admitted) AS g,
                     LATERAL (SELECT g.admitted AS admitted,
                                     g.admitted AND a.seq = ANY (v_taken) AS taken) AS l
                RETURNING id, seq, lease_token
            )
            SELECT coalesce(json_agg(json_build_array(id, seq) ORDER BY seq), '[]')
            INTO v_leased
            FROM created WHERE lease_token = 1;
        END IF;
        IF jsonb_array_length(v_plan -> 'cancelled_activities') > 0 THEN
            DELETE FROM activity_tasks
            WHERE run_id = p_run_id
              AND seq = ANY (jsonb_ints(v_plan -> 'cancelled_activities'));
        END IF;
        IF jsonb_array_length(v_plan -> 'cancelled_timers') > 0 THEN
            DELETE FROM inbox
            WHERE run_id = p_run_id
              AND timer_seq = ANY (jsonb_ints(v_plan -> 'cancelled_timers'));
        END IF;
        -- 6, going on.
        UPDATE workflows
        SET status = 'running', history_length = v_new, vars = coalesce(v_vars, vars)
        WHERE run_id = p_run_id;
        UPDATE workflow_tasks
        SET lease_owner = NULL, lease_expires_at = NULL, failures = 0, last_error = NULL,
            not_before = '-infinity', sticky_owner = v_owner
        WHERE run_id = p_run_id;
    END IF;

    -- 7, and the receipts of what was created or not.
    IF jsonb_array_length(v_plan -> 'workflows') > 0 THEN
        v_created := ARRAY(SELECT create_runs((v_plan -> 'workflows')::json));
        IF v_ending IS NULL THEN
            INSERT INTO inbox (run_id, visible_at, event)
            SELECT p_run_id, now(),
                   (x.new -> 'receipt'
                        ->> CASE WHEN x.new ->> 'run_id' = ANY (v_created) THEN 0 ELSE 1 END
                   )::json
            FROM jsonb_array_elements(v_plan -> 'workflows') WITH ORDINALITY AS x (new, n)
            WHERE jsonb_typeof(x.new -> 'receipt') = 'array'
            ORDER BY x.n;
        END IF;
    END IF;
    IF v_ending IS NULL THEN
        v_wake := EXISTS (SELECT FROM inbox WHERE run_id = p_run_id);
    END IF;
    RETURN json_build_object(
        'refused', NULL, 'leased', v_leased, 'wake', v_wake, 'woken', to_json(v_woken));
EXCEPTION
    WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
        RAISE;  -- the whole batch is retried; nothing of it was kept
    WHEN OTHERS THEN
        RETURN json_build_object('refused', 'failed', 'error', SQLERRM);
END
$$;

-- Many workflow tasks' commits in one round trip and one transaction (group commit), each
-- on its own savepoint (apply_plan's), so one task's failure does not undo the others.
-- p_tasks: [{"run_id", "token", "history_length", "plan", "take": null or a take}, ...],
-- sorted by run id (rows are locked in that order, so batches never deadlock). Returns,
-- per task in order, what apply_plan returns.
CREATE OR REPLACE FUNCTION commit_workflow_tasks(p_tasks jsonb) RETURNS json[]
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    t       record;
    results json[] := '{}';
BEGIN
    FOR t IN
        SELECT * FROM jsonb_to_recordset(p_tasks)
            AS x (run_id text, token bigint, history_length integer, plan jsonb, take jsonb)
    LOOP
        results := results || apply_plan(t.run_id, t.token, t.history_length, t.plan, t.take);
    END LOOP;
    RETURN results;
END
$$;

-- Many activity outcomes in one round trip: complete_activity_task's and
-- complete_and_continue's. p_items: [{"id", "run_id", "token", "event" (the outcome),
-- "take": null or a take, "ahead": null or {"history_length", "plan"}}, ...], sorted by
-- run id. Per item in order: {"refused": "lease_lost"} (nothing written), else
-- {"refused": null, "task": null or the run's workflow task, leased to the take's owner
-- if it asked and the task was free (not leased, due, not sticky to another), "ahead":
-- null or what apply_plan returned for the run-ahead plan, committed as the task just
-- leased}. The run-ahead is committed when "ahead" has "refused" null: then the outcome is
-- in its history and "task" is null (the caller knows the run). Otherwise the outcome is in the
-- inbox, and "task" (read after it) goes on at once, so the run's pollers need no wake-up.
CREATE OR REPLACE FUNCTION complete_activity_tasks(p_items jsonb) RETURNS json[]
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    item    record;
    v_owner text;
    v_token bigint;
    v_task  json;
    v_ahead json;
    results json[] := '{}';
BEGIN
    FOR item IN
        SELECT * FROM jsonb_to_recordset(p_items)
            AS x (id bigint, run_id text, token bigint, event text, take jsonb, ahead jsonb)
    LOOP
        -- Wait for a commit of the run's task in flight (rows locked in the order that
        -- commit locks them: the task, then activities), so that either the commit's look
        -- at the inbox sees this outcome or this outcome finds the task free: a wake-up sent
        -- while the task is still held would find nothing to claim, and be lost.
        PERFORM FROM workflow_tasks WHERE run_id = item.run_id FOR NO KEY UPDATE;
        DELETE FROM activity_tasks
        WHERE id = item.id AND run_id = item.run_id AND lease_token = item.token
          AND lease_expires_at > now();
        IF NOT FOUND THEN
            results := results || json_build_object('refused', CASE
                WHEN EXISTS (SELECT FROM activity_tasks WHERE id = item.id) THEN 'lease_lost'
                ELSE 'gone' END);
            CONTINUE;
        END IF;
        v_owner := item.take ->> 'owner';
        v_token := NULL;
        v_task := NULL;
        v_ahead := NULL;
        IF v_owner IS NOT NULL THEN
            UPDATE workflow_tasks
            SET lease_owner = v_owner, lease_token = lease_token + 1,
                lease_expires_at = now() + (item.take ->> 'lease')::interval
            WHERE run_id = item.run_id AND not_before <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at <= now())
              AND (sticky_owner IS NULL OR sticky_owner = v_owner)
            RETURNING lease_token INTO v_token;
        END IF;
        IF v_token IS NOT NULL AND item.ahead IS NOT NULL THEN
            v_ahead := apply_plan(item.run_id, v_token,
                                  (item.ahead ->> 'history_length')::integer,
                                  item.ahead -> 'plan', item.take);
            IF v_ahead ->> 'refused' IS NULL THEN
                results := results
                    || json_build_object('refused', NULL, 'task', v_task, 'ahead', v_ahead);
                CONTINUE;
            END IF;
        END IF;
        INSERT INTO inbox (run_id, visible_at, event)
        VALUES (item.run_id, now(), item.event::json);
        IF v_token IS NOT NULL THEN
            SELECT x INTO v_task FROM leased_tasks(ARRAY[item.run_id]) AS x;
        END IF;
        results := results
            || json_build_object('refused', NULL, 'task', v_task, 'ahead', v_ahead);
    END LOOP;
    RETURN results;
END
$$;

-- What a write with p_take leased to its owner, leased anew when the write's answer was
-- lost: {"task": null or the run's workflow task if the owner holds it, "activities": the
-- run's activity tasks of p_take's activities the owner holds on their first attempt}.
-- The task is locked before the activities, as completions lock them.
CREATE OR REPLACE FUNCTION reclaim(p_run_id text, p_take json) RETURNS json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_owner text := p_take ->> 'owner';
    v_lease interval := (p_take ->> 'lease')::interval;
    v_held  boolean;
    v_ids   bigint[];
BEGIN
    UPDATE workflow_tasks
    SET lease_token = lease_token + 1, lease_expires_at = now() + v_lease
    WHERE run_id = p_run_id AND lease_owner = v_owner AND lease_expires_at > now();
    v_held := FOUND;
    WITH leased AS (
        UPDATE activity_tasks
        SET lease_token = lease_token + 1, lease_expires_at = now() + v_lease
        WHERE run_id = p_run_id AND lease_owner = v_owner AND attempt = 1
          AND lease_expires_at > now()
          AND seq = ANY (json_ints(p_take -> 'activities'))
        RETURNING id
    )
    SELECT array_agg(id) INTO v_ids FROM leased;
    RETURN json_build_object(
        'task', CASE WHEN v_held THEN (SELECT x FROM leased_tasks(ARRAY[p_run_id]) AS x) END,
        'activities', coalesce((SELECT json_agg(a) FROM leased_activities(v_ids) AS a), '[]'));
END
$$;

-- Lease up to p_limit workflow tasks (of these names) with visible events, then read them.
-- A task sticky to another worker (it holds the instance) is left to that worker for
-- p_sticky before anyone else may take it. The names in p_polled (none, most times) are
-- recorded as polled for now. The reads are a statement of their own, after the leases: a
-- statement's subqueries see its snapshot, and the lease may follow a commit that finished
-- after that snapshot was taken (the row lock re-reads the row, not the rest), so a task
-- read in the leasing statement could carry an old history length and inbox, find at its
-- commit that history moved on, and hold its lease for nothing until it ran out.
CREATE OR REPLACE FUNCTION claim_workflow_tasks(
    p_names text[], p_owner text, p_lease interval, p_limit integer, p_sticky interval,
    p_polled text[], p_queues text[])
RETURNS SETOF json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_ids text[];
BEGIN
    PERFORM record_polls('workflow', p_polled);
    WITH ready AS (
        SELECT t.run_id
        FROM workflow_tasks t
        WHERE t.name = ANY (p_names) AND t.admitted AND t.queue = ANY (p_queues)
          AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= now())
          AND t.not_before <= now()
          AND EXISTS (
              SELECT 1 FROM inbox e
              WHERE e.run_id = t.run_id
                AND e.visible_at <= now() - CASE WHEN t.sticky_owner IS NULL
                                                  OR t.sticky_owner = p_owner
                                                 THEN interval '0' ELSE p_sticky END
          )
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), leased AS (
        UPDATE workflow_tasks t
        SET lease_owner = p_owner, lease_token = t.lease_token + 1,
            lease_expires_at = now() + p_lease
        FROM ready
        WHERE t.run_id = ready.run_id
        RETURNING t.run_id
    )
    SELECT array_agg(leased.run_id) INTO v_ids FROM leased;
    RETURN QUERY SELECT x FROM leased_tasks(v_ids) AS x;
END
$$;

-- A reset (tapeflow.backends.reset.ResetPlan's as_json()), stored as that module's
-- docstring says (steps 1 to 5), the id's latest run locked first as a commit locks it.
-- Returns {"refused": null, "woken": [names of the workflows the old run's end wrote to]},
-- or {"refused": "history_moved"} (nothing written: the latest run or its history moved
-- on). A step refused past the fence raises, undoing the whole reset.
CREATE OR REPLACE FUNCTION reset_run(p_reset jsonb) RETURNS json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_old    text := p_reset ->> 'from_run_id';
    v_event  integer := (p_reset ->> 'event')::integer;
    v_run    jsonb := p_reset -> 'run';
    v_new    text := v_run ->> 'run_id';
    v_latest record;
    v_done   json;
    v_woken  json := '[]';
BEGIN
    -- 1. Its task locked first, then its run, as a commit locks them.
    PERFORM FROM workflow_tasks t WHERE t.run_id = v_old FOR NO KEY UPDATE;
    SELECT w.run_id, w.run_number, w.history_length INTO v_latest FROM workflows w
    WHERE w.id = p_reset ->> 'workflow_id' ORDER BY w.run_number DESC LIMIT 1
    FOR NO KEY UPDATE;
    IF NOT FOUND OR v_latest.run_id <> v_old
       OR v_latest.history_length <> (p_reset ->> 'history_length')::integer THEN
        RETURN json_build_object('refused', 'history_moved');
    END IF;
    -- 2.
    INSERT INTO workflows (run_id, id, run_number, name, version, status, args, start_at,
                           parent_id, parent_run_id, parent_seq, on_parent_close,
                           history_length, queue, priority)
    VALUES (v_new, v_run ->> 'id', v_latest.run_number + 1, v_run ->> 'name',
            v_run ->> 'version', 'pending', (v_run ->> 'args')::json, now(),
            v_run -> 'parent' ->> 'workflow_id', v_run -> 'parent' ->> 'run_id',
            (v_run -> 'parent' ->> 'seq')::integer, v_run -> 'parent' ->> 'on_close',
            v_event, v_run ->> 'queue', (v_run ->> 'priority')::smallint);
    INSERT INTO workflow_tasks (run_id, name, queue, priority, admitted)
    VALUES (v_new, v_run ->> 'name', v_run ->> 'queue', (v_run ->> 'priority')::smallint,
            admits(v_run ->> 'queue'));
    INSERT INTO history (run_id, seq, event)
    SELECT v_new, h.seq, h.event FROM history h WHERE h.run_id = v_old AND h.seq <= v_event;
    -- 3.
    v_done := apply_plan(v_new, NULL, v_event, p_reset -> 'rows', NULL);
    IF v_done ->> 'refused' IS NOT NULL THEN
        RAISE EXCEPTION 'the rows of the reset run could not be stored: %', v_done;
    END IF;
    -- 4. (timer seq 0: tapeflow.backends.base.EXECUTION_TIMEOUT_SEQ)
    INSERT INTO inbox (run_id, visible_at, timer_seq, event)
    SELECT v_new, e.visible_at, e.timer_seq, e.event FROM inbox e
    WHERE e.run_id = v_old
      AND (e.timer_seq = 0 OR (e.timer_seq IS NULL AND e.event ->> 'kind' = 'event_received'))
    ORDER BY e.id;
    -- 5.
    IF jsonb_typeof(p_reset -> 'ending') = 'object' THEN
        v_done := apply_plan(v_old, NULL, v_latest.history_length, p_reset -> 'ending', NULL);
        IF v_done ->> 'refused' IS NOT NULL THEN
            RAISE EXCEPTION 'the end of the reset run could not be stored: %', v_done;
        END IF;
        v_woken := v_done -> 'woken';
    END IF;
    RETURN json_build_object('refused', NULL, 'woken', v_woken);
END
$$;

-- Delete the runs of workflow p_id up to run p_upto (its latest, found closed), all they
-- own, and its event keys and updates.
CREATE OR REPLACE FUNCTION drop_workflow(p_id text, p_upto integer) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_runs text[] := ARRAY(SELECT w.run_id FROM workflows w
                           WHERE w.id = p_id AND w.run_number <= p_upto);
BEGIN
    DELETE FROM history WHERE run_id = ANY (v_runs);
    DELETE FROM inbox WHERE run_id = ANY (v_runs);
    DELETE FROM activity_tasks WHERE run_id = ANY (v_runs);
    DELETE FROM workflow_tasks WHERE run_id = ANY (v_runs);
    DELETE FROM event_keys WHERE workflow_id = p_id;
    DELETE FROM updates WHERE workflow_id = p_id;
    DELETE FROM workflows WHERE run_id = ANY (v_runs);
END
$$;

-- Delete workflow p_id if its latest run has ended; returns that run's status (null: no
-- such workflow), having deleted nothing if it is unfinished.
CREATE OR REPLACE FUNCTION delete_workflow(p_id text) RETURNS text
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_latest record;
BEGIN
    SELECT w.run_number, w.status INTO v_latest FROM workflows w
    WHERE w.id = p_id ORDER BY w.run_number DESC LIMIT 1
    FOR UPDATE;
    IF FOUND AND v_latest.status NOT IN ('pending', 'running') THEN
        PERFORM drop_workflow(p_id, v_latest.run_number);
    END IF;
    RETURN v_latest.status;
END
$$;

-- Delete up to p_limit workflows whose latest run ended more than p_older_than ago, oldest
-- first; returns how many, or null if another transaction is doing it now (it holds this
-- schema's retention lock: workers sharing a database take turns, none waits).
CREATE OR REPLACE FUNCTION delete_closed(p_older_than interval, p_limit integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_closed record;
    v_count  integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('tapeflow.retention.' || current_schema())) THEN
        RETURN NULL;
    END IF;
    FOR v_closed IN
        SELECT w.id, w.run_number FROM workflows w
        WHERE w.completed_at < now() - p_older_than
          AND NOT EXISTS (SELECT FROM workflows n WHERE n.id = w.id AND n.run_number > w.run_number)
        ORDER BY w.completed_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    LOOP
        PERFORM drop_workflow(v_closed.id, v_closed.run_number);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- Admit up to p_limit of a queue's waiting due tasks of p_kind ("workflow" or "activity")
-- and these names, by priority then time, within the queue's limits (tapeflow.queues), and
-- lease them to p_owner (an activity's lease counting an attempt, as a claim's), in one
-- transaction: {"tasks": [leased_tasks or leased_activities rows], "retry_in": seconds
-- until more may be admitted with no wake-up (the rate's window moving on, a waiting task
-- coming due), or null}. The queue's row is locked first, so that admissions of one
-- queue take turns and each counts what the one before admitted; a queue without limits
-- (any more) admits as many as asked. Tasks locked elsewhere are skipped, never waited on.
CREATE OR REPLACE FUNCTION admit_queue(
    p_kind text, p_queue text, p_names text[], p_owner text, p_lease interval,
    p_limit integer)
RETURNS json
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $$
DECLARE
    v_limits  queues%ROWTYPE;
    v_limited boolean;
    v_room    integer := p_limit;
    v_started integer;
    v_oldest  timestamptz;
    v_runs    text[] := '{}';
    v_ids     bigint[] := '{}';
    v_taken   integer;
    v_tasks   json;
    v_next    timestamptz;
BEGIN
    SELECT * INTO v_limits FROM queues WHERE name = p_queue FOR UPDATE;
    v_limited := FOUND;
    IF v_limited AND v_limits.concurrency IS NOT NULL THEN
        v_room := least(v_room, v_limits.concurrency
            - (SELECT count(*) FROM workflow_tasks WHERE queue = p_queue AND admitted)
            - (SELECT count(*) FROM activity_tasks WHERE queue = p_queue AND admitted));
    END IF;
    IF v_limited AND v_limits.rate_limit IS NOT NULL THEN
        DELETE FROM queue_starts
        WHERE queue = p_queue AND started_at <= now() - v_limits.rate_period;
        SELECT count(*), min(started_at) INTO v_started, v_oldest
        FROM queue_starts WHERE queue = p_queue;
        v_room := least(v_room, v_limits.rate_limit - v_started);
    END IF;
    IF v_room > 0 AND p_kind = 'workflow' THEN
        WITH picked AS (
            SELECT t.run_id FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
            WHERE t.queue = p_queue AND NOT t.admitted AND t.lease_expires_at IS NULL
              AND t.name = ANY (p_names) AND w.start_at <= now()
            ORDER BY t.priority, w.start_at, w.created_at
            LIMIT v_room
            FOR UPDATE OF t SKIP LOCKED
        ), leased AS (
            UPDATE workflow_tasks t
            SET admitted = true, lease_owner = p_owner, lease_token = t.lease_token + 1,
                lease_expires_at = now() + p_lease
            FROM picked WHERE t.run_id = picked.run_id
            RETURNING t.run_id
        )
        SELECT coalesce(array_agg(run_id), '{}') INTO v_runs FROM leased;
    ELSIF v_room > 0 THEN
        WITH picked AS (
            SELECT a.id FROM activity_tasks a
            WHERE a.queue = p_queue AND NOT a.admitted AND a.lease_expires_at IS NULL
              AND a.name = ANY (p_names) AND a.visible_at <= now()
            ORDER BY a.priority, a.visible_at, a.id
            LIMIT v_room
            FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE activity_tasks a
            SET admitted = true, lease_owner = p_owner, lease_token = a.lease_token + 1,
                lease_expires_at = now() + p_lease, attempt = a.attempt + 1
            FROM picked WHERE a.id = picked.id
            RETURNING a.id
        )
        SELECT coalesce(array_agg(id), '{}') INTO v_ids FROM leased;
    END IF;
    v_taken := cardinality(v_runs) + cardinality(v_ids);
    IF v_started IS NOT NULL THEN  -- rated: each admission is a start
        INSERT INTO queue_starts (queue, started_at)
        SELECT p_queue, now() FROM generate_series(1, v_taken);
        IF v_started + v_taken >= v_limits.rate_limit THEN
            v_next := coalesce(v_oldest, now()) + v_limits.rate_period;
        END IF;
    END IF;
    IF p_kind = 'workflow' THEN
        SELECT coalesce(json_agg(x), '[]') INTO v_tasks FROM leased_tasks(v_runs) AS x;
        v_next := least(v_next, (
            SELECT min(w.start_at) FROM workflow_tasks t JOIN workflows w ON w.run_id = t.run_id
            WHERE t.queue = p_queue AND NOT t.admitted AND t.name = ANY (p_names)
              AND w.start_at > now()));
    ELSE
        SELECT coalesce(json_agg(x), '[]') INTO v_tasks FROM leased_activities(v_ids) AS x;
        v_next := least(v_next, (
            SELECT min(a.visible_at) FROM activity_tasks a
            WHERE a.queue = p_queue AND NOT a.admitted AND a.name = ANY (p_names)
              AND a.visible_at > now()));
    END IF;
    RETURN json_build_object(
        'tasks', v_tasks,
        'retry_in', CASE WHEN v_next IS NOT NULL
                         THEN greatest(extract(epoch FROM v_next - now()), 0) END);
END
$$;
