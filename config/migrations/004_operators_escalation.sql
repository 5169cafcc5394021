-- 004_operators_escalation: operator zones, and the record of every
-- notification attempt of the escalation engine (issue 5).
--
-- Operator actions (ack, resolve, note, transfer, reopen) are incident
-- transitions: they go to incident_transitions like the daemon's own
-- transitions, with the operator as actor and the action in detail.

-- The zones an operator works on; empty: every zone. Zone names are those
-- that devices send in source.zone.
ALTER TABLE operators ADD COLUMN zones text[] NOT NULL DEFAULT '{}';

-- One row per attempt to reach someone outside the consoles (SMS, phone
-- call, webhook) and per outcome reported back (an SMS delivery report).
-- idempotency_key is the same for every attempt at one incident, level and
-- target ("<incident>:<level>:<channel>:<target>"), also across restarts;
-- with attempt it names a row, so a retried audit batch writes it once.
CREATE TABLE notifications (
	seq             bigserial PRIMARY KEY,
	idempotency_key text NOT NULL,
	attempt         integer NOT NULL,       -- 1, 2, ...; 0 for a report
	incident_id     bigint NOT NULL,
	level           integer NOT NULL,
	channel         text NOT NULL
	                CHECK (channel IN ('console', 'sms', 'call', 'webhook')),
	target          text NOT NULL,          -- masked for sms and call
	outcome         text NOT NULL,          -- sent, failed, retry, gave_up,
	                                        -- delivered, undelivered, ...
	detail          jsonb NULL,
	at              timestamptz NOT NULL,
	recorded_at     timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT notifications_idempotency_key
		UNIQUE (idempotency_key, attempt, outcome)
);

CREATE INDEX notifications_incident_id_idx ON notifications (incident_id);
CREATE INDEX notifications_at_idx ON notifications (at);
