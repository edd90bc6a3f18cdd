-- 0014: the workers that run, what each runs (tapeflow.backends.presence.WorkerInfo), when
-- each started, was last heard from, and said it stopped.
CREATE TABLE workers (
    id           text PRIMARY KEY,
    info         jsonb NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    stopped_at   timestamptz
);
