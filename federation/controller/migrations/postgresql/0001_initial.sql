-- meshfed controller state, schema version 1 (the tables of the SQLite store, in PostgreSQL
-- types). Applied once, in one transaction, by federation.controller.pgstore.
CREATE TABLE clusters (
    name TEXT PRIMARY KEY,
    locality TEXT NOT NULL,
    network TEXT NOT NULL,
    gateway TEXT NOT NULL,
    provider TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    joined_at DOUBLE PRECISION,
    last_heartbeat DOUBLE PRECISION,
    intermediate_pem TEXT
);
CREATE TABLE join_tokens (
    token_sha256 TEXT PRIMARY KEY,
    cluster TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);
CREATE TABLE exports (
    cluster TEXT NOT NULL,
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cluster, namespace, service)
);
CREATE TABLE reports (
    cluster TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE documents (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, namespace, name, cluster)
);
