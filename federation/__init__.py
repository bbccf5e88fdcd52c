"""meshfed's federation layer: the controller, the cluster control plane, the resource model,
load-balancing policy and the ``meshfed`` CLI."""
