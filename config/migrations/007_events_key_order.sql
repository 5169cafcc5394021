-- 007_events_key_order: one b-tree less per audited event
-- (docs/BENCHMARKS.md, optimisation 16).
--
-- events had both UNIQUE (accept_seq, event_id), the idempotency key, and
-- a plain index on (event_id), for an auditor's lookup of one event. With
-- the key's columns the other way round, (event_id, accept_seq), the one
-- index serves both: a lookup by event_id alone uses its leading column,
-- and the key is the same set of columns, so the audit batch's
-- ON CONFLICT (accept_seq, event_id) and the chain trigger's idempotency
-- probe (accept_seq = .. AND event_id = ..) find it as before. Every
-- audited event then updates six indexes instead of seven: about 2.5 us
-- less of the audit backend's CPU per row, measured on a scratch cluster
-- with 30-row batches (about 5 %).
--
-- Nothing a verifier or a query sees changes: no column, no row, no hash.
-- On a large events table this migration reads the table once to build
-- the index (it runs inside alertctl migrate's transaction, so writers
-- wait for it: apply it in a quiet hour, docs/operations.md).

CREATE UNIQUE INDEX events_idempotency_key_007 ON events (event_id, accept_seq);
ALTER TABLE events DROP CONSTRAINT events_idempotency_key;
ALTER TABLE events ADD CONSTRAINT events_idempotency_key
	UNIQUE USING INDEX events_idempotency_key_007;
DROP INDEX events_event_id_idx;
