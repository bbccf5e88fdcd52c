"""The cluster control plane: service registry, xDS generators, snapshot cache, ADS server,
certificates for proxies, health checks and its HTTP API.

Layers inside (enforced by import-linter): ``server``/``api`` (wiring, I/O) above ``ads`` (the
gRPC streams, which sees only the cache protocol) above ``snapshot`` (immutable snapshots and
the cache) above ``generate`` (pure protos from state) above ``registry``/``proxy`` (state).
"""
