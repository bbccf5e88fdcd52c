"""meshfed's data plane: Envoy bootstrap, the proxy agent (sidecar and east-west gateway roles)
and gateway listener generation."""
