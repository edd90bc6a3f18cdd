-- 0013: visibility. Each run keeps the variables its workflow set (workflow.set_var) as of
-- its last commit, and lists find runs by index: newest first by (created_at, run_id),
-- the keyset a page's cursor names, within a status or a workflow name; by id prefix
-- (compared in code point order, whatever the database's collation); by a variable's
-- value (containment, jsonb_path_ops).
ALTER TABLE workflows ADD COLUMN vars jsonb;
CREATE INDEX workflows_by_created ON workflows (created_at, run_id);
CREATE INDEX workflows_by_status ON workflows (status, created_at, run_id);
CREATE INDEX workflows_by_name ON workflows (name, created_at, run_id);
CREATE INDEX workflows_by_id_prefix ON workflows (id COLLATE "C");
CREATE INDEX workflows_by_vars ON workflows USING gin (vars jsonb_path_ops);
