-- 002_audit_chain: the audit trail becomes append-only and hash-chained,
-- and gets the indexes of the audit queries (docs/audit.md).
--
-- One chain runs over every audit table (events, incident_transitions, and
-- the notification and operator-action tables of later issues): each row
-- gets the next chain_seq, the hash of the row before it (prev_hash) and
-- its own row_hash = sha256(prev_hash || canonical text of the row). The
-- canonical text is audit_canon(table, row): a jsonb object
-- {"table": ..., "row": <every column but prev_hash and row_hash>} printed
-- by PostgreSQL (jsonb text is deterministic; timestamps in UTC whatever
-- the session's TimeZone). chain_seq is part of the row, so a reordered
-- row no longer matches its hash.
--
-- The chain is linked inside PostgreSQL, by a BEFORE INSERT trigger that
-- first locks the one-row table audit_chain_head: every writer (several
-- alertd instances, a replayed spool) is serialised there, and the order
-- of the chain is the order of the commits. The head row is written once
-- per statement (see audit_chain_next). The trigger also skips a row
-- whose idempotency key is already stored (the batch's ON CONFLICT DO
-- NOTHING comes too late: a BEFORE trigger runs before the conflict
-- check, and a skipped row must not move the head).
--
-- A later audit table joins the chain with the three columns, a trigger
-- function like audit_chain_events() (its own key check) and the two
-- append-only triggers below.

CREATE TABLE audit_chain_head (
	one        boolean PRIMARY KEY DEFAULT true CHECK (one),
	chain_seq  bigint NOT NULL,
	hash       bytea NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
-- The genesis: chain_seq 0, 32 zero bytes.
INSERT INTO audit_chain_head (chain_seq, hash)
VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

ALTER TABLE events
	ADD COLUMN chain_seq bigint,
	ADD COLUMN prev_hash bytea,
	ADD COLUMN row_hash bytea;
ALTER TABLE incident_transitions
	ADD COLUMN chain_seq bigint,
	ADD COLUMN prev_hash bytea,
	ADD COLUMN row_hash bytea;

-- The canonical text of a row of table tbl (any audit table's row type).
CREATE FUNCTION audit_canon(tbl text, r anyelement) RETURNS text
LANGUAGE sql STABLE
SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, YMD'
AS $$
	SELECT jsonb_build_object('table', tbl,
	                          'row', to_jsonb(r) - 'prev_hash' - 'row_hash')::text
$$;

CREATE FUNCTION audit_chain_hash(prev bytea, canon text) RETURNS bytea
LANGUAGE sql IMMUTABLE
AS $$ SELECT sha256(prev || convert_to(canon, 'UTF8')) $$;

-- The head of the chain for the next row, with the head row locked until
-- the end of the transaction. Within a transaction the running head is
-- kept in the transaction-local setting alertd.chain_head
-- ("<chain_seq>:<hex hash>") and written to audit_chain_head once per
-- statement (audit_chain_store_head): updating that one row per inserted
-- row would make a batch cost quadratic in its size (every update of the
-- same row in one transaction adds a version the next lookup walks).
CREATE FUNCTION audit_chain_next(OUT seq bigint, OUT prev bytea)
LANGUAGE plpgsql
AS $$
DECLARE
	cur text;
BEGIN
	-- Serialises every writer; cheap when this transaction holds it.
	SELECT chain_seq, hash INTO seq, prev FROM audit_chain_head FOR UPDATE;
	cur := current_setting('alertd.chain_head', true);
	IF cur IS NOT NULL AND cur <> '' AND
	   split_part(cur, ':', 1)::bigint > seq THEN
		seq := split_part(cur, ':', 1)::bigint;
		prev := decode(split_part(cur, ':', 2), 'hex');
	END IF;
END
$$;

CREATE FUNCTION audit_chain_link(seq bigint, hash bytea) RETURNS void
LANGUAGE sql
AS $$ SELECT set_config('alertd.chain_head',
                        seq || ':' || encode(hash, 'hex'), true) $$;

CREATE FUNCTION audit_chain_store_head() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	cur text := current_setting('alertd.chain_head', true);
BEGIN
	IF cur IS NOT NULL AND cur <> '' THEN
		UPDATE audit_chain_head
		   SET chain_seq = split_part(cur, ':', 1)::bigint,
		       hash = decode(split_part(cur, ':', 2), 'hex'),
		       updated_at = now()
		 WHERE chain_seq < split_part(cur, ':', 1)::bigint;
	END IF;
	RETURN NULL;
END
$$;

CREATE FUNCTION audit_chain_events() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	h record;
BEGIN
	h := audit_chain_next();
	IF EXISTS (SELECT 1 FROM events
	           WHERE accept_seq = NEW.accept_seq
	             AND event_id = NEW.event_id) THEN
		RETURN NULL;   -- already recorded: idempotent, the head stays
	END IF;
	NEW.chain_seq := h.seq + 1;
	NEW.prev_hash := h.prev;
	NEW.row_hash := audit_chain_hash(NEW.prev_hash,
	                                 audit_canon(TG_TABLE_NAME, NEW));
	PERFORM audit_chain_link(NEW.chain_seq, NEW.row_hash);
	RETURN NEW;
END
$$;

CREATE FUNCTION audit_chain_transitions() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	h record;
BEGIN
	h := audit_chain_next();
	IF EXISTS (SELECT 1 FROM incident_transitions
	           WHERE transition_id = NEW.transition_id
	             AND at = NEW.at) THEN
		RETURN NULL;
	END IF;
	NEW.chain_seq := h.seq + 1;
	NEW.prev_hash := h.prev;
	NEW.row_hash := audit_chain_hash(NEW.prev_hash,
	                                 audit_canon(TG_TABLE_NAME, NEW));
	PERFORM audit_chain_link(NEW.chain_seq, NEW.row_hash);
	RETURN NEW;
END
$$;

-- Rows written before this migration join the chain in the order they
-- were recorded; the head is written once at the end.
DO $$
DECLARE
	r record;
	n bigint := 0;
	prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
	canon text;
BEGIN
	FOR r IN
		SELECT 'events' AS tbl, e.seq, e.recorded_at FROM events e
		UNION ALL
		SELECT 'incident_transitions', t.seq, t.recorded_at
		  FROM incident_transitions t
		ORDER BY recorded_at, tbl, seq
	LOOP
		n := n + 1;
		IF r.tbl = 'events' THEN
			UPDATE events SET chain_seq = n, prev_hash = prev
			 WHERE events.seq = r.seq;
			SELECT audit_canon('events', e) INTO canon
			  FROM events e WHERE e.seq = r.seq;
			prev := audit_chain_hash(prev, canon);
			UPDATE events SET row_hash = prev WHERE events.seq = r.seq;
		ELSE
			UPDATE incident_transitions
			   SET chain_seq = n, prev_hash = prev
			 WHERE incident_transitions.seq = r.seq;
			SELECT audit_canon('incident_transitions', t) INTO canon
			  FROM incident_transitions t WHERE t.seq = r.seq;
			prev := audit_chain_hash(prev, canon);
			UPDATE incident_transitions SET row_hash = prev
			 WHERE incident_transitions.seq = r.seq;
		END IF;
	END LOOP;
	UPDATE audit_chain_head SET chain_seq = n, hash = prev;
END
$$;

ALTER TABLE events
	ALTER COLUMN chain_seq SET NOT NULL,
	ALTER COLUMN prev_hash SET NOT NULL,
	ALTER COLUMN row_hash SET NOT NULL,
	ADD CONSTRAINT events_chain_seq_key UNIQUE (chain_seq);
ALTER TABLE incident_transitions
	ALTER COLUMN chain_seq SET NOT NULL,
	ALTER COLUMN prev_hash SET NOT NULL,
	ALTER COLUMN row_hash SET NOT NULL,
	ADD CONSTRAINT incident_transitions_chain_seq_key UNIQUE (chain_seq);

CREATE TRIGGER events_chain BEFORE INSERT ON events
	FOR EACH ROW EXECUTE FUNCTION audit_chain_events();
CREATE TRIGGER incident_transitions_chain BEFORE INSERT
	ON incident_transitions
	FOR EACH ROW EXECUTE FUNCTION audit_chain_transitions();
CREATE TRIGGER events_chain_head AFTER INSERT ON events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_store_head();
CREATE TRIGGER incident_transitions_chain_head AFTER INSERT
	ON incident_transitions
	FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_store_head();

-- Append-only: no UPDATE, DELETE or TRUNCATE of an audit row, whoever
-- asks (grants alone do not bind the tables' owner). A superuser can still
-- disable triggers: that is what the chain is for.
CREATE FUNCTION audit_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	RAISE EXCEPTION 'audit table %: % is not allowed (append-only)',
		TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
	BEFORE UPDATE OR DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER incident_transitions_append_only
	BEFORE UPDATE OR DELETE ON incident_transitions
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER incident_transitions_no_truncate
	BEFORE TRUNCATE ON incident_transitions
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
-- The head moves only forward (by the chain triggers).
CREATE FUNCTION audit_head_forward() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	IF TG_OP <> 'UPDATE' OR NEW.chain_seq <= OLD.chain_seq THEN
		RAISE EXCEPTION 'audit_chain_head: only the chain triggers move it'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER audit_chain_head_forward
	BEFORE UPDATE OR DELETE ON audit_chain_head
	FOR EACH ROW EXECUTE FUNCTION audit_head_forward();

-- The audit queries (docs/audit.md has their plans).
CREATE INDEX incident_transitions_actor_at_idx
	ON incident_transitions (actor, at);
CREATE INDEX incident_transitions_to_state_at_idx
	ON incident_transitions (to_state, at);

-- Every audit row as one time line: the shape of `alertctl audit` and
-- GET /v1/audit. A later audit table (notifications, operator actions)
-- adds its branch with CREATE OR REPLACE VIEW; the planner pushes the
-- filters into each branch, so each uses its own indexes.
--   at          when it happened (events: received_at)
--   kind        'event' | 'transition' | ...
--   summary     a short line for people
--   data        the payload / detail (jsonb; personal attrs masked on
--               output for roles without the right)
CREATE VIEW audit_log AS
	SELECT e.received_at AS at, 'event'::text AS kind, e.incident_id,
	       e.source_id, NULL::text AS actor,
	       e.type || ' ' || e.outcome || ' priority ' || e.priority
	           AS summary,
	       e.payload AS data, e.event_id AS ref, e.chain_seq
	  FROM events e
	UNION ALL
	SELECT t.at, 'transition', t.incident_id, NULL, t.actor,
	       coalesce(t.from_state, '-') || ' -> ' || t.to_state,
	       t.detail, t.transition_id, t.chain_seq
	  FROM incident_transitions t;
