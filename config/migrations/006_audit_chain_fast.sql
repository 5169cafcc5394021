-- 006_audit_chain_fast: the same hash chain as 002/005, linked at a third
-- of the cost per row (docs/BENCHMARKS.md, optimisation 5).
--
-- Nothing a verifier sees changes: chain_seq, prev_hash and row_hash are
-- defined exactly as before (row_hash = sha256(prev_hash || audit_canon(
-- table, row))), so rows written before and after this migration form one
-- chain and `alertctl audit verify` is unchanged. What changes is how the
-- trigger gets there. Measured with EXPLAIN ANALYZE on a 512-row INSERT,
-- the per-row trigger of 002 spent about 35 us a row, most of it in the
-- calls of small helper functions rather than in the work itself:
--   - audit_chain_next() locked and read audit_chain_head for every row;
--     now the head is locked once per transaction: the running head in
--     the transaction-local setting alertd.chain_head carries the
--     transaction's id ("<xid>:<chain_seq>:<hex hash>"), and a value
--     written by this transaction proves that it already holds the lock;
--   - audit_canon() (a SQL function with SET clauses, which PostgreSQL
--     cannot inline) and audit_chain_link() are inlined; audit_canon is
--     still called when the session's TimeZone is not UTC (the canonical
--     text prints timestamps in UTC), so the result is the same whatever
--     the session (alertd sets PGTZ=UTC for its connections);
--   - one trigger function serves every audit table, the idempotency
--     check being the only part that names a table.

CREATE FUNCTION audit_chain_row() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	xid text := pg_current_xact_id()::text;
	cur text := current_setting('alertd.chain_head', true);
	seq bigint;
	prev bytea;
	canon text;
BEGIN
	IF cur IS NOT NULL AND split_part(cur, ':', 1) = xid THEN
		-- This transaction locked the head already: its running head.
		seq := split_part(cur, ':', 2)::bigint;
		prev := decode(split_part(cur, ':', 3), 'hex');
	ELSE
		-- Serialises every writer until this transaction ends.
		SELECT h.chain_seq, h.hash INTO seq, prev
		  FROM audit_chain_head h FOR UPDATE;
	END IF;

	-- A row whose idempotency key is stored already is skipped (the
	-- batch's ON CONFLICT DO NOTHING comes after BEFORE triggers) and
	-- does not move the head. Checked after the lock, so a concurrent
	-- writer of the same key has committed by now.
	IF TG_TABLE_NAME = 'events' THEN
		IF EXISTS (SELECT 1 FROM events
		           WHERE accept_seq = NEW.accept_seq
		             AND event_id = NEW.event_id) THEN
			RETURN NULL;
		END IF;
	ELSIF TG_TABLE_NAME = 'incident_transitions' THEN
		IF EXISTS (SELECT 1 FROM incident_transitions
		           WHERE transition_id = NEW.transition_id
		             AND at = NEW.at) THEN
			RETURN NULL;
		END IF;
	ELSIF TG_TABLE_NAME = 'notifications' THEN
		IF EXISTS (SELECT 1 FROM notifications
		           WHERE idempotency_key = NEW.idempotency_key
		             AND attempt = NEW.attempt
		             AND outcome = NEW.outcome) THEN
			RETURN NULL;
		END IF;
	ELSE
		RAISE EXCEPTION 'audit_chain_row: no idempotency check for table %',
			TG_TABLE_NAME;
	END IF;

	NEW.chain_seq := seq + 1;
	NEW.prev_hash := prev;
	IF current_setting('TimeZone') IN ('UTC', 'Etc/UTC') THEN
		-- audit_canon(), inlined (one key-array delete, not two
		-- deletes that copy the row twice: the same text).
		canon := jsonb_build_object('table', TG_TABLE_NAME,
			'row', to_jsonb(NEW) - ARRAY['prev_hash', 'row_hash'])::text;
	ELSE
		canon := audit_canon(TG_TABLE_NAME, NEW);
	END IF;
	NEW.row_hash := sha256(prev || convert_to(canon, 'UTF8'));
	PERFORM set_config('alertd.chain_head',
		xid || ':' || NEW.chain_seq || ':' || encode(NEW.row_hash, 'hex'),
		true);
	RETURN NEW;
END
$$;

-- The head row, once per statement, from the running head.
CREATE OR REPLACE FUNCTION audit_chain_store_head() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	cur text := current_setting('alertd.chain_head', true);
BEGIN
	IF cur IS NOT NULL AND
	   split_part(cur, ':', 1) = pg_current_xact_id()::text THEN
		UPDATE audit_chain_head
		   SET chain_seq = split_part(cur, ':', 2)::bigint,
		       hash = decode(split_part(cur, ':', 3), 'hex'),
		       updated_at = now()
		 WHERE chain_seq < split_part(cur, ':', 2)::bigint;
	END IF;
	RETURN NULL;
END
$$;

DROP TRIGGER events_chain ON events;
DROP TRIGGER incident_transitions_chain ON incident_transitions;
DROP TRIGGER notifications_chain ON notifications;
CREATE TRIGGER events_chain BEFORE INSERT ON events
	FOR EACH ROW EXECUTE FUNCTION audit_chain_row();
CREATE TRIGGER incident_transitions_chain BEFORE INSERT
	ON incident_transitions
	FOR EACH ROW EXECUTE FUNCTION audit_chain_row();
CREATE TRIGGER notifications_chain BEFORE INSERT ON notifications
	FOR EACH ROW EXECUTE FUNCTION audit_chain_row();

DROP FUNCTION audit_chain_events();
DROP FUNCTION audit_chain_transitions();
DROP FUNCTION audit_chain_notifications();
DROP FUNCTION audit_chain_next();
DROP FUNCTION audit_chain_link(bigint, bytea);
