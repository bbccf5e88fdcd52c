"""The east-west gateway program: SNI passthrough into this cluster for other clusters'
callers, built on the shared proxy agent (:mod:`federation.agent`: identity, Envoy bootstrap,
supervisor, metrics).

- :mod:`eastwest_gateway.gateway` -- :class:`~eastwest_gateway.gateway.GatewayConfig` and
  :func:`~eastwest_gateway.gateway.run_gateway` (``meshfed proxy gateway``).

The gateway's Envoy listener is an xDS resource and is generated with the others by the
control plane (:mod:`federation.controlplane.generate.gateway`).
"""
