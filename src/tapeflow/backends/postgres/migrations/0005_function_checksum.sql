-- 0005: the PL/pgSQL functions leave the migrations for functions.sql; the checksum of the
-- copy applied is kept here, so a changed file is applied again on the next start.

CREATE TABLE schema_functions (revision integer NOT NULL, checksum text NOT NULL);
