-- meshfed controller state, schema version 3: the replicas of a replicated controller
-- (federation.controller.replicas). Each replica upserts its row every renewal; clients
-- learn from it where every live replica's API and sync service listen.
CREATE TABLE replicas (
    name TEXT PRIMARY KEY,
    api_url TEXT NOT NULL,
    sync_address TEXT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
-- Each cluster's latest traffic table as its control plane reported it to any replica (the
-- proto's JSON; seq orders the writes, so replicas read only what is new), and the routing
-- plans of cost mode optimize as the leader last published them (fenced by its term).
CREATE SEQUENCE traffic_seq;
CREATE TABLE traffic (
    cluster TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
);
CREATE TABLE routing_plans (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL,
    fencing BIGINT NOT NULL,
    written_at TIMESTAMPTZ NOT NULL
);
