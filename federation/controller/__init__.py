"""The federation controller: membership, the root of trust's signing service, exports and
imports across clusters, and the sync stream that keeps every cluster control plane current.

Layers: ``server`` (wiring) > ``api`` / ``sync`` (REST and gRPC edges) > ``hub`` (who gets what,
when) > ``imports`` / ``membership`` (pure decisions) and ``store`` (SQLite).
"""
