-- The PL/pgSQL functions, kept apart from the numbered migrations (which hold tables and
-- data only). The backend applies this whole file, under the migration lock, whenever its
-- checksum differs from the one recorded in schema_functions, so a change here is a change
-- of this file alone. A change of a function's signature or return type must DROP it first.
-- Raise the revision below with every change: a process whose file has a lower revision
-- than the one applied leaves the newer functions in place (a rolling upgrade).
-- revision: 4

CREATE OR REPLACE FUNCTION commit_workflow_task(c workflow_commit) RETURNS json
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
-- Returns {"error": null, "eager": [[task id, seq], ...], "wake": bool} once committed: the
-- activity tasks in c.eager_seqs leased to c.owner (attempt 1), and whether the workflow's
-- pollers must be woken: its inbox holds events that came while the task was held, or
-- timers, whose due time a poller may have put off while the lease was held; else
-- {"error": why the lease did not hold}, or {"error": "unseen events"} when the task would
-- end the workflow while its inbox holds events (not timers) the task did not see: then
-- nothing is written, since ending would drop them, and the task must run again.
DECLARE
    v_token  bigint;
    v_live   boolean;
    v_length integer;
    v_new    integer := c.history_length + cardinality(c.events);
    v_eager  json;
    v_wake   boolean := false;
BEGIN
    SELECT t.lease_token, t.lease_expires_at > now(), w.history_length
    INTO v_token, v_live, v_length
    FROM workflow_tasks t JOIN workflows w ON w.id = t.workflow_id
    WHERE t.workflow_id = c.id
    FOR NO KEY UPDATE OF t, w;
    IF NOT FOUND OR v_token <> c.token OR v_live IS NOT TRUE THEN  -- NULL: released
        RETURN json_build_object('error', 'lease lost');
    END IF;
    IF v_length <> c.history_length THEN
        RETURN json_build_object('error', 'history moved on');
    END IF;
    IF c.status IS NOT NULL AND EXISTS (
        SELECT FROM inbox
        WHERE workflow_id = c.id AND timer_seq IS NULL AND NOT (id = ANY (c.consumed))
    ) THEN
        RETURN json_build_object('error', 'unseen events');
    END IF;

    DELETE FROM inbox WHERE workflow_id = c.id AND id = ANY (c.consumed);
    INSERT INTO history (workflow_id, seq, event)
    SELECT c.id, c.history_length + u.n, u.event::json
    FROM unnest(c.events) WITH ORDINALITY AS u (event, n);

    IF c.status IS NOT NULL THEN
        UPDATE workflows
        SET status = c.status, result = c.result::json, failure = c.failure::json,
            completed_at = now(), history_length = v_new
        WHERE id = c.id;
        DELETE FROM workflow_tasks WHERE workflow_id = c.id;
        DELETE FROM activity_tasks WHERE workflow_id = c.id;
        DELETE FROM inbox WHERE workflow_id = c.id;
    ELSE
        WITH created AS (
            INSERT INTO activity_tasks (workflow_id, seq, name, args, retry, visible_at,
                                        lease_owner, lease_expires_at, lease_token, attempt)
            SELECT c.id, u.seq, u.name, u.args::json, u.retry::json, now(),
                   CASE WHEN leased THEN c.owner END, CASE WHEN leased THEN now() + c.lease END,
                   leased::integer, leased::integer
            FROM unnest(c.activity_seqs, c.activity_names, c.activity_args, c.activity_retries)
                AS u (seq, name, args, retry),
                 LATERAL (SELECT u.seq = ANY (c.eager_seqs) AS leased) AS l
            RETURNING id, seq, lease_token
        )
        SELECT coalesce(json_agg(json_build_array(id, seq)), '[]') INTO v_eager
        FROM created WHERE lease_token = 1;
        INSERT INTO inbox (workflow_id, visible_at, timer_seq, event)
        SELECT c.id, u.due, u.seq, u.event::json
        FROM unnest(c.timer_dues, c.timer_seqs, c.timer_events) AS u (due, seq, event);
        DELETE FROM inbox WHERE workflow_id = c.id AND timer_seq = ANY (c.cancelled_timers);
        UPDATE workflows SET status = 'running', history_length = v_new WHERE id = c.id;
        UPDATE workflow_tasks
        SET lease_owner = NULL, lease_expires_at = NULL, failures = 0, last_error = NULL,
            not_before = '-infinity', sticky_owner = lease_owner
        WHERE workflow_id = c.id;
        v_wake := EXISTS (SELECT FROM inbox WHERE workflow_id = c.id);
    END IF;
    RETURN json_build_object('error', NULL, 'eager', coalesce(v_eager, '[]'), 'wake', v_wake);
END
$$;

-- Many workflow tasks' commits in one round trip and one transaction (group commit): each
-- task is committed on its own savepoint, so one task's failure does not undo the others.
-- Returns, per task in order, what commit_workflow_task returns.
CREATE OR REPLACE FUNCTION commit_workflow_tasks(p_tasks json) RETURNS json[]
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    t       workflow_commit;
    outcome json;
    results json[] := '{}';
BEGIN
    FOR t IN SELECT * FROM json_populate_recordset(NULL::workflow_commit, p_tasks) LOOP
        BEGIN
            outcome := commit_workflow_task(t);
        EXCEPTION
            WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
                RAISE;  -- the whole batch is retried; nothing of it was kept
            WHEN OTHERS THEN
                outcome := json_build_object('error', 'failed: ' || SQLERRM);
        END;
        results := results || outcome;
    END LOOP;
    RETURN results;
END
$$;

-- Many activity outcomes in one round trip.
CREATE OR REPLACE FUNCTION complete_activity_tasks(p_items json) RETURNS json[]
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
-- Per item in order: {"recorded": false} when the lease was lost, else {"recorded": true,
-- "continued": what commit_workflow_task returned for the item's "commit" (the workflow's
-- next task, run ahead by the item's owner), "resumed": null or the workflow task, leased to
-- the item's owner when it asked and the task was free: then it goes on at once, and the
-- workflow's pollers need no wake-up}. A continuation that cannot be committed (the task
-- is held, the history moved on, or it would end the workflow past unseen events) leaves
-- the outcome in the inbox, as without one.
DECLARE
    item     record;
    c        workflow_commit;
    workflow text;
    v_token  bigint;
    v_fails  integer;
    resumed  json;
    outcome  json;
    results  json[] := '{}';
BEGIN
    FOR item IN
        SELECT * FROM json_to_recordset(p_items) AS x (
            id bigint, workflow_id text, token bigint, event text, owner text, lease interval,
            commit json)
    LOOP
        resumed := NULL;
        -- Wait for a commit of the workflow's task in flight (rows locked in the order that
        -- commit locks them: the task, then activities), so that either the commit's look
        -- at the inbox sees this outcome or this outcome finds the task free: a wake-up sent
        -- while the task is still held would find nothing to claim, and be lost.
        PERFORM FROM workflow_tasks WHERE workflow_id = item.workflow_id FOR NO KEY UPDATE;
        DELETE FROM activity_tasks
        WHERE id = item.id AND lease_token = item.token AND lease_expires_at > now()
        RETURNING workflow_id INTO workflow;
        IF NOT FOUND THEN
            results := results || json_build_object('recorded', false);
            CONTINUE;
        END IF;
        v_token := NULL;
        IF item.owner IS NOT NULL THEN
            UPDATE workflow_tasks
            SET lease_owner = item.owner, lease_token = lease_token + 1,
                lease_expires_at = now() + item.lease
            WHERE workflow_id = workflow AND not_before <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at <= now())
              AND (sticky_owner IS NULL OR sticky_owner = item.owner)
            RETURNING lease_token, failures INTO v_token, v_fails;
        END IF;
        IF v_token IS NOT NULL AND item.commit IS NOT NULL THEN
            c := json_populate_record(NULL::workflow_commit, item.commit);
            c.id := workflow;
            c.token := v_token;
            BEGIN
                outcome := commit_workflow_task(c);
            EXCEPTION
                WHEN deadlock_detected OR serialization_failure OR lock_not_available THEN
                    RAISE;
                WHEN OTHERS THEN
                    outcome := json_build_object('error', 'failed: ' || SQLERRM);
            END;
            IF outcome ->> 'error' IS NULL THEN
                results := results || json_build_object('recorded', true, 'continued', outcome);
                CONTINUE;
            END IF;
        END IF;
        INSERT INTO inbox (workflow_id, visible_at, event)
        VALUES (workflow, now(), item.event::json);
        IF v_token IS NOT NULL THEN
            SELECT json_build_object(
                'token', v_token, 'failures', v_fails, 'claimed_at', now(),
                'history_length', (SELECT history_length FROM workflows WHERE id = workflow),
                'ids', coalesce(json_agg(e.id ORDER BY e.id), '[]'),
                'events', coalesce(json_agg(e.event::text ORDER BY e.id), '[]'))
            INTO resumed
            FROM inbox e WHERE e.workflow_id = workflow AND e.visible_at <= now();
        END IF;
        results := results || json_build_object('recorded', true, 'resumed', resumed);
    END LOOP;
    RETURN results;
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
    p_polled text[])
RETURNS TABLE (o_workflow_id text, o_name text, o_token bigint, o_failures integer,
               o_claimed_at timestamptz, o_history_length integer, o_inbox_ids bigint[],
               o_inbox_events text[])
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_ids text[];
BEGIN
    INSERT INTO pollers (kind, name, last_poll_at)
    SELECT 'workflow', n, now() FROM unnest(p_polled) AS n
    ON CONFLICT (kind, name) DO UPDATE SET last_poll_at = excluded.last_poll_at;
    WITH ready AS (
        SELECT t.workflow_id
        FROM workflow_tasks t
        WHERE t.name = ANY (p_names)
          AND (t.lease_expires_at IS NULL OR t.lease_expires_at <= now())
          AND t.not_before <= now()
          AND EXISTS (
              SELECT 1 FROM inbox e
              WHERE e.workflow_id = t.workflow_id
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
        WHERE t.workflow_id = ready.workflow_id
        RETURNING t.workflow_id
    )
    SELECT array_agg(leased.workflow_id) INTO v_ids FROM leased;
    RETURN QUERY
    SELECT t.workflow_id, t.name, t.lease_token, t.failures, now(), w.history_length,
           ARRAY(SELECT e.id FROM inbox e
                 WHERE e.workflow_id = t.workflow_id AND e.visible_at <= now() ORDER BY e.id),
           ARRAY(SELECT e.event::text FROM inbox e
                 WHERE e.workflow_id = t.workflow_id AND e.visible_at <= now() ORDER BY e.id)
    FROM workflow_tasks t JOIN workflows w ON w.id = t.workflow_id
    WHERE t.workflow_id = ANY (v_ids);
END
$$;
