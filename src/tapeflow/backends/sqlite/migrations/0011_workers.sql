-- 0011: the workers that run, what each runs (JSON: tapeflow.backends.presence.WorkerInfo),
-- when each started, was last heard from, and said it stopped.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    info         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    stopped_at   INTEGER
) WITHOUT ROWID;
