"""The cluster control plane: service registry, xDS generators, snapshot cache, ADS server,
certificates for proxies, health checks, its HTTP API and its link to the controller.

Layers inside (enforced by import-linter): ``server`` (wiring) > ``api`` | ``link`` (the
federation controller's client) | ``health`` > ``builder`` | ``ads`` (the gRPC streams, which
see only the cache protocol) | ``explain`` | ``state_store`` | ``report`` > ``snapshot``
(immutable snapshots and the cache) | ``identities`` | ``status`` > ``generate`` (pure protos
from state) > ``registry`` | ``proxy`` | ``resource`` (state and names).
"""
