-- 008_chain_in_alertd: alertd links the chain of the rows it writes
-- itself, so that PostgreSQL no longer runs a PL/pgSQL trigger per
-- audited row (docs/BENCHMARKS.md, optimisation 27; measurement 26 showed
-- that trigger to be what held durable TCP ingest back).
--
-- The chain is the one of 002: one chain_seq sequence over every audit
-- table, row_hash = sha256(prev_hash || canonical text), the head in
-- audit_chain_head. What changes, for the rows alertd writes from now on
-- (events and incident_transitions), is who makes the canonical text and
-- where it is kept:
--
--   - alertd writes it: a JSON object with the table's name, the row's
--     chain_seq and recorded_at, and the row's columns as alertd sends
--     them ({"table":"events","chain_seq":41,"recorded_at_ms":..,
--     "accept_seq":..,..,"payload":{..}}; docs/audit.md has both forms).
--     alertd hashes it and sends the row with chain_seq, prev_hash,
--     row_hash and that exact text, in the new column canon;
--   - the batch statement of alertd (daemon/audit.c) locks the head,
--     checks that it is the head alertd linked to and that no row of the
--     batch is stored already, inserts the rows and moves the head, in
--     one statement; if the head moved meanwhile (another instance, a
--     notification row) or a row is stored already, the same statement
--     inserts the rows without links and the trigger below links them;
--   - `alertctl audit verify` hashes the stored canon, and checks in SQL
--     that it says what the row's columns say (audit_canon_ok below):
--     editing a column breaks that check, editing canon breaks the hash.
--
-- Rows written before this migration, and rows that come without a
-- row_hash (notifications, a row inserted by hand), are linked by the
-- trigger of 006 as before: the canon column stays NULL and their
-- canonical text is audit_canon(), which now leaves out the canon column
-- (so that adding it changes no old row's text). One chain holds both
-- kinds of rows; verify takes each by its kind.

ALTER TABLE events ADD COLUMN canon text NULL;
ALTER TABLE incident_transitions ADD COLUMN canon text NULL;

-- The canonical text of a trigger-linked row (002), whatever columns the
-- table has gained since.
CREATE OR REPLACE FUNCTION audit_canon(tbl text, r anyelement) RETURNS text
LANGUAGE sql STABLE
SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
AS $$
	SELECT jsonb_build_object('table', tbl,
	                          'row', to_jsonb(r) -
	                                 ARRAY['prev_hash', 'row_hash', 'canon']
	                         )::text
$$;

-- The trigger of 006, leaving out the canon column like audit_canon().
CREATE OR REPLACE FUNCTION audit_chain_row() RETURNS trigger
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
		seq := split_part(cur, ':', 2)::bigint;
		prev := decode(split_part(cur, ':', 3), 'hex');
	ELSE
		SELECT h.chain_seq, h.hash INTO seq, prev
		  FROM audit_chain_head h FOR UPDATE;
	END IF;

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
		canon := jsonb_build_object('table', TG_TABLE_NAME,
			'row', to_jsonb(NEW) -
			       ARRAY['prev_hash', 'row_hash', 'canon'])::text;
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

-- A row that comes linked (row_hash set: alertd's batches) does not call
-- the trigger at all: the WHEN condition is checked by the executor,
-- without a PL/pgSQL call. Such a row must carry its canonical text.
DROP TRIGGER events_chain ON events;
DROP TRIGGER incident_transitions_chain ON incident_transitions;
CREATE TRIGGER events_chain BEFORE INSERT ON events
	FOR EACH ROW WHEN (NEW.row_hash IS NULL)
	EXECUTE FUNCTION audit_chain_row();
CREATE TRIGGER incident_transitions_chain BEFORE INSERT
	ON incident_transitions
	FOR EACH ROW WHEN (NEW.row_hash IS NULL)
	EXECUTE FUNCTION audit_chain_row();

-- Unix milliseconds of a timestamp, as alertd writes times in canon.
CREATE FUNCTION audit_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT (extract(epoch FROM t) * 1000)::bigint $$;

-- Whether a canonical text written by alertd says what the row's columns
-- say (NULL canon: a trigger-linked row, nothing to compare). Compared as
-- jsonb, member by member: the payload and detail by their meaning, as
-- the columns store them. A canon that is not JSON at all says nothing
-- (false), rather than stopping the verification.
CREATE FUNCTION audit_canon_ok(e events) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	c jsonb;
BEGIN
	IF e.canon IS NULL THEN
		RETURN true;
	END IF;
	BEGIN
		c := e.canon::jsonb;
		RETURN c - 'payload' =
		       jsonb_build_object(
		           'table', 'events', 'chain_seq', e.chain_seq,
		           'recorded_at_ms', audit_ms(e.recorded_at),
		           'accept_seq', e.accept_seq, 'event_id', e.event_id,
		           'source_id', e.source_id,
		           'source_kind', e.source_kind, 'type', e.type,
		           'outcome', e.outcome, 'incident_id', e.incident_id,
		           'priority', e.priority,
		           'received_at_ms', audit_ms(e.received_at)) ||
		       CASE WHEN e.occurred_at IS NULL THEN '{}'::jsonb
		            ELSE jsonb_build_object('occurred_at_ms',
		                                    audit_ms(e.occurred_at))
		       END
		   AND CASE jsonb_typeof(c -> 'payload')
		            WHEN 'string' THEN (c ->> 'payload')::jsonb
		            ELSE c -> 'payload'
		       END = e.payload;
	EXCEPTION WHEN data_exception THEN
		RETURN false;
	END;
END
$$;

CREATE FUNCTION audit_canon_ok(t incident_transitions) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	c jsonb;
BEGIN
	IF t.canon IS NULL THEN
		RETURN true;
	END IF;
	BEGIN
		c := t.canon::jsonb;
		RETURN c - 'detail' =
		       jsonb_build_object(
		           'table', 'incident_transitions',
		           'chain_seq', t.chain_seq,
		           'recorded_at_ms', audit_ms(t.recorded_at),
		           'transition_id', t.transition_id,
		           'incident_id', t.incident_id,
		           'from_state', t.from_state, 'to_state', t.to_state,
		           'actor', t.actor, 'at_ms', audit_ms(t.at))
		   AND (c ->> 'detail')::jsonb IS NOT DISTINCT FROM t.detail;
	EXCEPTION WHEN data_exception THEN
		RETURN false;
	END;
END
$$;

-- What verify walks: for an alertd-linked row its stored canon, and
-- whether that canon agrees with the row (content_ok).
CREATE OR REPLACE VIEW audit_chain_rows AS
	SELECT e.chain_seq, 'events'::text AS tbl, e.seq, e.event_id AS ref,
	       e.prev_hash, e.row_hash,
	       coalesce(e.canon, audit_canon('events', e)) AS canon,
	       e.recorded_at, audit_canon_ok(e) AS content_ok
	  FROM events e
	UNION ALL
	SELECT t.chain_seq, 'incident_transitions', t.seq, t.transition_id,
	       t.prev_hash, t.row_hash,
	       coalesce(t.canon, audit_canon('incident_transitions', t)),
	       t.recorded_at, audit_canon_ok(t)
	  FROM incident_transitions t
	UNION ALL
	SELECT n.chain_seq, 'notifications', n.seq,
	       n.idempotency_key || '#' || n.attempt || ':' || n.outcome,
	       n.prev_hash, n.row_hash, audit_canon('notifications', n),
	       n.recorded_at, true
	  FROM notifications n;
