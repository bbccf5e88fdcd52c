"""meshfed's resource model: Kubernetes-shaped YAML documents validated with pydantic."""
