-- 0007: child workflows and continue-as-new. A child run keeps its parent's run, the seq
-- of the decision that started it and the event it gets if that run closes first; the
-- status of a run that continued as new is spelled 'continued_as_new'.
ALTER TABLE workflows ADD COLUMN parent_run_id TEXT;
ALTER TABLE workflows ADD COLUMN parent_seq INTEGER;
ALTER TABLE workflows ADD COLUMN on_parent_close TEXT;
-- The status CHECK admitted 'continued', which no run ever had. SQLite changes a CHECK only
-- by rebuilding the table (and every table with a foreign key to it), or, for a change
-- that every stored row already satisfies, by editing the table's definition in place
-- (the "simpler procedure" of SQLite's ALTER TABLE documentation); RESET makes this
-- connection read it again, and the CREATE INDEX below changes the schema version, so
-- that other connections do too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, '''continued''', '''continued_as_new''')
WHERE type = 'table' AND name = 'workflows';
PRAGMA writable_schema = RESET;
PRAGMA writable_schema = OFF;
CREATE INDEX workflows_by_parent ON workflows (parent_run_id) WHERE parent_run_id IS NOT NULL;
