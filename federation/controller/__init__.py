"""The federation controller: membership, the root of trust's signing service, exports and
imports across clusters, and the sync stream that keeps every cluster control plane current.

Layers (import-linter): ``server`` (wiring) > ``api`` / ``sync`` (REST and gRPC edges) >
``service`` (the federation's rules: validate, store, recompute) > ``hub`` (who gets what,
when) > ``imports`` > ``membership`` (pure decisions) > ``store`` (SQLite). The wire protocol
with control planes is :mod:`federation.sync`.
"""
