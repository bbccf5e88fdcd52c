"""A cluster control plane's link to the federation controller: join once, then stay in sync.

- :mod:`~federation.controlplane.link.join` -- **join** (once, with a one-time token from
  ``meshfed cluster join``): the cluster's intermediate CA key is generated here (0600, never
  sent), its CSR goes to ``POST /v1/join``; the signed intermediate and the trust bundle are
  kept in ``<state_dir>/ca``.
- :mod:`~federation.controlplane.link.state` -- what a joined control plane remembers in
  ``<state_dir>/federation.json``: where to dial, and the last ``ControllerUpdate`` (so a
  control plane restarted while the controller is away serves the same imports).
- :mod:`~federation.controlplane.link.session` -- **sync** (``meshfed.sync.v1`` over mTLS):
  reports up, updates down, reconnect with backoff; stops for good when the controller
  refuses the cluster (removed from the federation).
- :mod:`~federation.controlplane.link.rtt` -- RTT probes to other clusters' gateways.
"""
