-- meshfed controller state, schema version 3: the replicas of a replicated controller
-- (federation.controller.replicas). Each replica upserts its row every renewal; clients
-- learn from it where every live replica's API and sync service listen.
CREATE TABLE replicas (
    name TEXT PRIMARY KEY,
    api_url TEXT NOT NULL,
    sync_address TEXT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
