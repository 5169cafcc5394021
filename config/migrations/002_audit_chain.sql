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
-- of the chain is the order of the commits. The trigger also skips a row
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

-- Links NEW to the chain (head locked by the caller).
CREATE FUNCTION audit_chain_hash(prev bytea, canon text) RETURNS bytea
LANGUAGE sql IMMUTABLE
AS $$ SELECT sha256(prev || convert_to(canon, 'UTF8')) $$;

CREATE FUNCTION audit_chain_events() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	h audit_chain_head%ROWTYPE;
BEGIN
	SELECT * INTO h FROM audit_chain_head FOR UPDATE;
	IF EXISTS (SELECT 1 FROM events
	           WHERE accept_seq = NEW.accept_seq
	             AND event_id = NEW.event_id) THEN
		RETURN NULL;   -- already recorded: idempotent, the head stays
	END IF;
	NEW.chain_seq := h.chain_seq + 1;
	NEW.prev_hash := h.hash;
	NEW.row_hash := audit_chain_hash(NEW.prev_hash,
	                                 audit_canon(TG_TABLE_NAME, NEW));
	UPDATE audit_chain_head
	   SET chain_seq = NEW.chain_seq, hash = NEW.row_hash,
	       updated_at = now();
	RETURN NEW;
END
$$;

CREATE FUNCTION audit_chain_transitions() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	h audit_chain_head%ROWTYPE;
BEGIN
	SELECT * INTO h FROM audit_chain_head FOR UPDATE;
	IF EXISTS (SELECT 1 FROM incident_transitions
	           WHERE transition_id = NEW.transition_id
	             AND at = NEW.at) THEN
		RETURN NULL;
	END IF;
	NEW.chain_seq := h.chain_seq + 1;
	NEW.prev_hash := h.hash;
	NEW.row_hash := audit_chain_hash(NEW.prev_hash,
	                                 audit_canon(TG_TABLE_NAME, NEW));
	UPDATE audit_chain_head
	   SET chain_seq = NEW.chain_seq, hash = NEW.row_hash,
	       updated_at = now();
	RETURN NEW;
END
$$;

-- Rows written before this migration join the chain in the order they
-- were recorded.
DO $$
DECLARE
	r record;
	h audit_chain_head%ROWTYPE;
	canon text;
BEGIN
	FOR r IN
		SELECT 'events' AS tbl, seq, recorded_at FROM events
		UNION ALL
		SELECT 'incident_transitions', seq, recorded_at
		  FROM incident_transitions
		ORDER BY recorded_at, tbl, seq
	LOOP
		SELECT * INTO h FROM audit_chain_head;
		IF r.tbl = 'events' THEN
			UPDATE events SET chain_seq = h.chain_seq + 1,
			                  prev_hash = h.hash
			 WHERE seq = r.seq;
			SELECT audit_canon('events', e) INTO canon
			  FROM events e WHERE seq = r.seq;
			UPDATE events SET row_hash = audit_chain_hash(h.hash, canon)
			 WHERE seq = r.seq;
			UPDATE audit_chain_head SET chain_seq = h.chain_seq + 1,
			       hash = (SELECT row_hash FROM events WHERE seq = r.seq);
		ELSE
			UPDATE incident_transitions
			   SET chain_seq = h.chain_seq + 1, prev_hash = h.hash
			 WHERE seq = r.seq;
			SELECT audit_canon('incident_transitions', t) INTO canon
			  FROM incident_transitions t WHERE seq = r.seq;
			UPDATE incident_transitions
			   SET row_hash = audit_chain_hash(h.hash, canon)
			 WHERE seq = r.seq;
			UPDATE audit_chain_head SET chain_seq = h.chain_seq + 1,
			       hash = (SELECT row_hash FROM incident_transitions
			               WHERE seq = r.seq);
		END IF;
	END LOOP;
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
-- The head moves only forward, by the chain triggers.
CREATE FUNCTION audit_head_forward() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
	IF TG_OP <> 'UPDATE' OR NEW.chain_seq <> OLD.chain_seq + 1 THEN
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
