-- 009_identifier_collation: the text keys of the audit tables compare
-- byte by byte (COLLATE "C"), whatever locale the database was made with.
--
-- A database takes the locale of its cluster: `createdb` on a Debian
-- server whose cluster was made under en_US.UTF-8 compares every text in
-- a b-tree with the C library's strcoll, which for these identifiers
-- (event ids, source ids, transition ids, operator names) costs far more
-- than a memcmp and orders nothing anybody reads. Every audited event
-- inserts its event_id into the idempotency key and its source_id into
-- the (source_id, received_at) index: in a database made with
-- en_US.UTF-8, PostgreSQL spent 35-50 % more CPU on each of alertd's
-- audit rows than in one made with the C locale, where the bench and the
-- tests run (docs/BENCHMARKS.md, 42.). With the columns' collation fixed
-- to "C" both cost the same.
--
-- Equality, the only comparison alertd's statements and the audit queries
-- make on these columns, means the same under both collations (both are
-- deterministic: equal means the same bytes); what changes is the order
-- of an ORDER BY on them, now by bytes (code points for UTF-8), and no
-- statement of alertd sorts by them for people. A parameter or a literal
-- compared with such a column takes the column's collation, so every
-- statement keeps using its index unchanged.
--
-- No table is rewritten (the type stays text) and no row changes: the
-- canonical texts and hashes of the chain do not depend on a collation.
-- The indexes on the columns are rebuilt, under the ALTER's exclusive
-- lock: on a large audit trail, apply it in a quiet hour (alertd's rows
-- wait in its queue and then in its spool meanwhile, docs/operations.md).
-- The views that read the columns are dropped and made again from their
-- own definitions (ALTER COLUMN TYPE refuses a column a view uses).

DO $$
DECLARE
	log_def text := pg_get_viewdef('audit_log'::regclass);
	rows_def text := pg_get_viewdef('audit_chain_rows'::regclass);
BEGIN
	DROP VIEW audit_log;
	DROP VIEW audit_chain_rows;

	ALTER TABLE events
		ALTER COLUMN event_id TYPE text COLLATE "C",
		ALTER COLUMN source_id TYPE text COLLATE "C";
	ALTER TABLE incident_transitions
		ALTER COLUMN transition_id TYPE text COLLATE "C",
		ALTER COLUMN actor TYPE text COLLATE "C",
		ALTER COLUMN to_state TYPE text COLLATE "C";
	ALTER TABLE notifications
		ALTER COLUMN idempotency_key TYPE text COLLATE "C",
		ALTER COLUMN outcome TYPE text COLLATE "C";

	EXECUTE 'CREATE VIEW audit_log AS ' || log_def;
	EXECUTE 'CREATE VIEW audit_chain_rows AS ' || rows_def;
END
$$;
