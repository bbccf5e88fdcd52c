-- meshfed controller state, schema version 4: the ClusterSetIP of each exported service
-- (federation.controller.clusterset_ips), allocated when a service is first exported and
-- freed when no cluster exports it any more; one address per service, never two services
-- on one address.
CREATE TABLE clusterset_ips (
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    ip TEXT NOT NULL UNIQUE,
    PRIMARY KEY (namespace, service)
);
