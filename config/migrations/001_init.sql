-- 001_init: the audit trail (accepted events, incident transitions), the
-- operators and the record of applied migrations.
--
-- Applied by `alertctl migrate` inside one transaction, recorded in
-- schema_migrations as version '001_init'. Rows of events and
-- incident_transitions are written by the daemon's audit module only, in
-- batches that are idempotent on accept_seq and transition_id.

-- alertctl creates it before it applies anything; kept here so that the file
-- also works when fed to psql by hand.
CREATE TABLE IF NOT EXISTS schema_migrations (
	version    text PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
);

-- Every accepted event, once. accept_seq is the number Redis gave the event
-- when it decided it: a duplicate delivery or a retried batch writes the same
-- (accept_seq, event_id) again and changes nothing. The key includes
-- event_id because a Redis that lost its data counts again from 1: a new
-- event must then get its row, not be mistaken for an old one. event_id
-- alone is not unique either: the same id may legitimately come back after
-- the idempotency window.
CREATE TABLE events (
	seq          bigserial PRIMARY KEY,
	accept_seq   bigint NOT NULL,
	event_id     text NOT NULL,
	source_id    text NOT NULL,
	source_kind  text NOT NULL,
	type         text NOT NULL,
	outcome      text NOT NULL CHECK (outcome IN ('new', 'merged')),
	incident_id  bigint NOT NULL,
	priority     integer NOT NULL,
	occurred_at  timestamptz NULL,          -- the device's clock, if sent
	received_at  timestamptz NOT NULL,      -- alertd's clock
	recorded_at  timestamptz NOT NULL DEFAULT now(),
	payload      jsonb NOT NULL,            -- the canonical event JSON
	CONSTRAINT events_idempotency_key UNIQUE (accept_seq, event_id)
);

CREATE INDEX events_event_id_idx ON events (event_id);
CREATE INDEX events_incident_id_idx ON events (incident_id);
CREATE INDEX events_source_received_idx ON events (source_id, received_at);
CREATE INDEX events_received_at_idx ON events (received_at);

-- Every change of an incident's state (opened, escalated, acknowledged,
-- resolved). transition_id names the change ("<incident>:<version>",
-- "<incident>:open"); with its time it is the idempotency key, so that a
-- retried batch or a duplicate delivery cannot record a transition twice,
-- while an incident id that Redis reused after losing its data still gets
-- its own rows.
CREATE TABLE incident_transitions (
	seq           bigserial PRIMARY KEY,
	transition_id text NOT NULL,
	incident_id   bigint NOT NULL,
	from_state    text NULL,                -- NULL for the opening transition
	to_state      text NOT NULL,
	actor         text NOT NULL,            -- 'alertd' or an operator name
	detail        jsonb NULL,
	at            timestamptz NOT NULL,
	recorded_at   timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT incident_transitions_idempotency_key
		UNIQUE (transition_id, at)
);

CREATE INDEX incident_transitions_incident_id_idx
	ON incident_transitions (incident_id);
CREATE INDEX incident_transitions_at_idx ON incident_transitions (at);

-- Operators and their bearer tokens. Only the lower-case hex SHA-256 of a
-- token is stored; the token itself is shown once by `alertctl operator add`.
-- A revoked operator keeps its row (the audit trail names it).
CREATE TABLE operators (
	id         serial PRIMARY KEY,
	name       text NOT NULL UNIQUE,
	role       text NOT NULL
	           CHECK (role IN ('operator', 'supervisor', 'auditor', 'admin')),
	token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz NULL
);
