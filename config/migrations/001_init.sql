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

-- Every accepted event, once. accept_seq is the idempotency key given by
-- Redis when the event was decided: a duplicate delivery or a retried batch
-- writes the same accept_seq again and changes nothing. event_id is the
-- sender's id; it is not unique here because the same id may legitimately
-- come back after the idempotency window.
CREATE TABLE events (
	seq          bigserial PRIMARY KEY,
	accept_seq   bigint NOT NULL UNIQUE,
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
	payload      jsonb NOT NULL             -- the canonical event JSON
);

CREATE INDEX events_event_id_idx ON events (event_id);
CREATE INDEX events_incident_id_idx ON events (incident_id);
CREATE INDEX events_source_received_idx ON events (source_id, received_at);
CREATE INDEX events_received_at_idx ON events (received_at);

-- Every change of an incident's state (opened, escalated, acknowledged,
-- resolved). transition_id is "<incident>:<version>", unique, so that a
-- retried batch cannot record a transition twice.
CREATE TABLE incident_transitions (
	seq           bigserial PRIMARY KEY,
	transition_id text NOT NULL UNIQUE,
	incident_id   bigint NOT NULL,
	from_state    text NULL,                -- NULL for the opening transition
	to_state      text NOT NULL,
	actor         text NOT NULL,            -- 'alertd' or an operator name
	detail        jsonb NULL,
	at            timestamptz NOT NULL,
	recorded_at   timestamptz NOT NULL DEFAULT now()
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
