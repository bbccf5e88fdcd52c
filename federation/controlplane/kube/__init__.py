"""The control plane on Kubernetes (issue #20): the cluster as its service registry."""
