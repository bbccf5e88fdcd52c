-- meshfed controller state, schema version 2: the leader lease of replicated controllers
-- (federation.controller.leader). One row; the fencing number grows with every new term.
CREATE TABLE leader_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    fencing BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
INSERT INTO leader_lease VALUES (1, '', 0, '-infinity');
