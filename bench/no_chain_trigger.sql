-- EXPERIMENT ONLY: never apply this to a database whose audit trail
-- matters. It removes the hash chain (docs/audit.md): every row gets the
-- same constant hashes and `alertctl audit verify` fails on all of them.
--
-- What it is for: measuring how fast alertd would be if PostgreSQL did
-- not link the chain row by row, i.e. the most that hashing the chain
-- outside PostgreSQL (in alertd) could gain (docs/BENCHMARKS.md,
-- measurement 26). The chain columns are filled by column defaults
-- instead of the per-row trigger; chain_seq still comes from a sequence,
-- so its unique index is maintained as a real chain's would be.
--
-- Use it as the last migration of a bench build folder:
--   mkdir -p build/notrig/migrations
--   cp build/alertd build/alertctl build/loadgen build/notrig/
--   cp config/migrations/*.sql build/notrig/migrations/
--   cp bench/no_chain_trigger.sql \
--      build/notrig/migrations/900_no_chain_trigger.sql
--   mkdir -p build/base && cp build/alertd build/alertctl build/loadgen build/base/
--   scripts/bench_ab.sh tcp-max build/base build/notrig -- 2
CREATE SEQUENCE experiment_chain_seq START 1000000000;
ALTER TABLE events
	ALTER COLUMN chain_seq SET DEFAULT nextval('experiment_chain_seq'),
	ALTER COLUMN prev_hash SET DEFAULT decode(repeat('00', 32), 'hex'),
	ALTER COLUMN row_hash SET DEFAULT decode(repeat('11', 32), 'hex');
ALTER TABLE incident_transitions
	ALTER COLUMN chain_seq SET DEFAULT nextval('experiment_chain_seq'),
	ALTER COLUMN prev_hash SET DEFAULT decode(repeat('00', 32), 'hex'),
	ALTER COLUMN row_hash SET DEFAULT decode(repeat('11', 32), 'hex');
ALTER TABLE notifications
	ALTER COLUMN chain_seq SET DEFAULT nextval('experiment_chain_seq'),
	ALTER COLUMN prev_hash SET DEFAULT decode(repeat('00', 32), 'hex'),
	ALTER COLUMN row_hash SET DEFAULT decode(repeat('11', 32), 'hex');
DROP TRIGGER events_chain ON events;
DROP TRIGGER incident_transitions_chain ON incident_transitions;
DROP TRIGGER notifications_chain ON notifications;
DROP TRIGGER events_chain_head ON events;
DROP TRIGGER incident_transitions_chain_head ON incident_transitions;
DROP TRIGGER notifications_chain_head ON notifications;
