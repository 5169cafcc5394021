-- 005_notifications_chain: the notification attempts of the escalation
-- engine (004) join the audit hash chain of 002, are append-only like the
-- other audit tables, and appear in the audit time line.
--
-- audit_chain_rows lists every chained row of every audit table; `alertctl
-- audit verify` reads only this view, so an audit table added later joins
-- the verification by extending the view, not the code.

ALTER TABLE notifications
	ADD COLUMN chain_seq bigint,
	ADD COLUMN prev_hash bytea,
	ADD COLUMN row_hash bytea;

CREATE FUNCTION audit_chain_notifications() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
	h record;
BEGIN
	h := audit_chain_next();
	IF EXISTS (SELECT 1 FROM notifications
	           WHERE idempotency_key = NEW.idempotency_key
	             AND attempt = NEW.attempt
	             AND outcome = NEW.outcome) THEN
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

-- Rows written before this migration are appended to the chain in the
-- order they were recorded.
DO $$
DECLARE
	r record;
	n bigint;
	prev bytea;
	canon text;
BEGIN
	SELECT chain_seq, hash INTO n, prev FROM audit_chain_head FOR UPDATE;
	FOR r IN SELECT seq FROM notifications ORDER BY recorded_at, seq LOOP
		n := n + 1;
		UPDATE notifications SET chain_seq = n, prev_hash = prev
		 WHERE notifications.seq = r.seq;
		SELECT audit_canon('notifications', x) INTO canon
		  FROM notifications x WHERE x.seq = r.seq;
		prev := audit_chain_hash(prev, canon);
		UPDATE notifications SET row_hash = prev
		 WHERE notifications.seq = r.seq;
	END LOOP;
	UPDATE audit_chain_head SET chain_seq = n, hash = prev, updated_at = now()
	 WHERE chain_seq < n;
END
$$;

ALTER TABLE notifications
	ALTER COLUMN chain_seq SET NOT NULL,
	ALTER COLUMN prev_hash SET NOT NULL,
	ALTER COLUMN row_hash SET NOT NULL,
	ADD CONSTRAINT notifications_chain_seq_key UNIQUE (chain_seq);

CREATE TRIGGER notifications_chain BEFORE INSERT ON notifications
	FOR EACH ROW EXECUTE FUNCTION audit_chain_notifications();
CREATE TRIGGER notifications_chain_head AFTER INSERT ON notifications
	FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_store_head();
CREATE TRIGGER notifications_append_only
	BEFORE UPDATE OR DELETE ON notifications
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER notifications_no_truncate BEFORE TRUNCATE ON notifications
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

CREATE INDEX notifications_recorded_at_idx ON notifications (recorded_at);

-- Every chained row: what `alertctl audit verify` walks in chain_seq order.
--   tbl, seq, ref   which row (ref: its natural key, for people)
--   canon           the canonical text its row_hash covers
CREATE VIEW audit_chain_rows AS
	SELECT e.chain_seq, 'events'::text AS tbl, e.seq, e.event_id AS ref,
	       e.prev_hash, e.row_hash, audit_canon('events', e) AS canon,
	       e.recorded_at
	  FROM events e
	UNION ALL
	SELECT t.chain_seq, 'incident_transitions', t.seq, t.transition_id,
	       t.prev_hash, t.row_hash, audit_canon('incident_transitions', t),
	       t.recorded_at
	  FROM incident_transitions t
	UNION ALL
	SELECT n.chain_seq, 'notifications', n.seq,
	       n.idempotency_key || '#' || n.attempt || ':' || n.outcome,
	       n.prev_hash, n.row_hash, audit_canon('notifications', n),
	       n.recorded_at
	  FROM notifications n;

-- The audit time line gains the notification attempts.
CREATE OR REPLACE VIEW audit_log AS
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
	  FROM incident_transitions t
	UNION ALL
	SELECT n.at, 'notification', n.incident_id, NULL, NULL,
	       n.channel || ' ' || n.target || ' level ' || n.level || ' ' ||
	           n.outcome || ' (attempt ' || n.attempt || ')',
	       n.detail, n.idempotency_key, n.chain_seq
	  FROM notifications n;
