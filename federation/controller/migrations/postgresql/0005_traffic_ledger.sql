-- meshfed controller state, schema version 5: the traffic ledger (federation.traffic_days):
-- what each path carried per UTC day, and per cluster the cumulative totals last added to it
-- (the mark the next write is compared with), for 'meshfed cost report' and 'cost reconcile'.
CREATE TABLE traffic_days (
    day TEXT NOT NULL,
    source_cluster TEXT NOT NULL,
    source_locality TEXT NOT NULL,
    destination_service TEXT NOT NULL,
    destination_cluster TEXT NOT NULL,
    destination_locality TEXT NOT NULL,
    path_class TEXT NOT NULL,
    requests BIGINT NOT NULL,
    request_bytes BIGINT NOT NULL,
    response_bytes BIGINT NOT NULL,
    egress_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, source_cluster, source_locality, destination_service,
                 destination_cluster, destination_locality, path_class)
);
CREATE TABLE traffic_marks (
    cluster TEXT PRIMARY KEY,
    started_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL
);
