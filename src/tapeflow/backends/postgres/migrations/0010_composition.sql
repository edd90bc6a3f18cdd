-- 0010: child workflows and continue-as-new. A child run keeps its parent's run, the seq
-- of the decision that started it and the event it gets if that run closes first; the
-- status of a run that continued as new is spelled 'continued_as_new' (no run ever had
-- the 'continued' the CHECK admitted).
ALTER TABLE workflows ADD COLUMN parent_run_id text;
ALTER TABLE workflows ADD COLUMN parent_seq integer;
ALTER TABLE workflows ADD COLUMN on_parent_close text;
ALTER TABLE workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_status_check
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'terminated',
                      'timed_out', 'continued_as_new'));
CREATE INDEX workflows_by_parent ON workflows (parent_run_id) WHERE parent_run_id IS NOT NULL;
