-- 0010: visibility. Each run keeps the variables its workflow set (workflow.set_var) as of
-- its last commit (JSON text), and lists find runs by index: newest first by (created_at,
-- run_id), the keyset a page's cursor names, within a status or a workflow name; an id
-- prefix is a range of the (id, run_number) index.
ALTER TABLE workflows ADD COLUMN vars TEXT;
CREATE INDEX workflows_by_created ON workflows (created_at, run_id);
CREATE INDEX workflows_by_status ON workflows (status, created_at, run_id);
CREATE INDEX workflows_by_name ON workflows (name, created_at, run_id);
