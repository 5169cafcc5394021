-- 003_sources: the device registry (issue 3). Every known source with its
-- kind, zone, label, secret group and supervision interval. alertctl
-- `sources import FILE.csv` upserts rows here and loads them into Redis
-- (hash P src:<id>), where decide.lua reads them; the daemon never writes
-- this table. last-seen and the online/offline state live in Redis only
-- (they change with every heartbeat); the transitions of device_offline
-- incidents are in incident_transitions.
CREATE TABLE sources (
	id            text PRIMARY KEY
	              CHECK (id ~ '^[A-Za-z0-9._:-]{1,64}$'),
	kind          text NOT NULL
	              CHECK (kind IN ('bus', 'ferry', 'stop', 'park',
	                              'support_line', 'other')),
	zone          text NULL,
	label         text NULL,
	secret_group  text NULL,     -- which [device_secrets] entry signs it
	supervision_s integer NULL   -- NULL: the default of its kind
	              CHECK (supervision_s >= 0),
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sources_kind_zone_idx ON sources (kind, zone);
