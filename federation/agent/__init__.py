"""The proxy agent: the process that runs next to one Envoy (a sidecar or an east-west
gateway) or writes a proxyless gRPC client's bootstrap. It is a program of its own beside the
controller (:mod:`federation.controller`) and the control plane
(:mod:`federation.controlplane`), and imports neither; what it shares with the control plane
is the wire (:mod:`federation.sync.node`, the node contract, and the traffic report proto).

- :mod:`~federation.agent.config` -- what the agent is told: frozen dataclasses the CLI fills
  from flags (:class:`~federation.agent.config.AgentConfig`,
  :class:`~federation.agent.config.SidecarConfig`,
  :class:`~federation.agent.config.GrpcBootstrapConfig`);
- :mod:`~federation.agent.controlplane_api` -- its client of the control plane's HTTP API
  (``/v1/bootstrap``, registering and deregistering a WorkloadEntry);
- :mod:`~federation.agent.prepare` -- config + the control plane's bootstrap facts -> the
  workload identity, the Envoy bootstrap and the supervisor's settings;
- :mod:`~federation.agent.sidecar` -- :func:`~federation.agent.sidecar.run_sidecar`;
  the gateway program on top of the same parts is :mod:`eastwest_gateway`;
- :mod:`~federation.agent.run` -- one agent's life: identity, traffic tap, metrics endpoint
  and the supervisor, until SIGTERM;
- :mod:`~federation.agent.supervisor` -- starts, restarts, drains and stops Envoy;
- :mod:`~federation.agent.envoy_process` -- one Envoy process;
- :mod:`~federation.agent.bootstrap` -- the Envoy bootstrap (pure);
- :mod:`~federation.agent.grpc_bootstrap` -- a proxyless gRPC client's bootstrap (pure);
- :mod:`~federation.agent.tap` -- the sidecar's traffic counter and its reports;
- :mod:`~federation.agent.metrics` -- the agent's Prometheus endpoint;
- :mod:`~federation.agent.errors` -- its exception tree.
"""
