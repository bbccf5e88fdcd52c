"""The embedded local federation (``meshfed up``): several clusters on loopback with real
Envoys, certificates, controller and control planes, and demo apps."""
