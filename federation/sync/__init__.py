"""The sync protocol between cluster control planes and the federation controller.

Both sides import this package and neither imports the other:

- :mod:`federation.sync.messages` -- the typed messages (``ClusterReport`` up,
  ``ControllerUpdate`` down) that the rest of the code uses;
- :mod:`federation.sync.convert` -- the one place that turns them into protos and back;
- :mod:`federation.sync.identity` -- the names both sides agree on (control-plane SPIFFE IDs,
  the controller's server name);
- ``proto/`` -- ``meshfed.sync.v1`` (``sync.proto`` and its generated code, ``make proto``).
"""
