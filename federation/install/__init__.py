"""Install time on Kubernetes: what ``meshfed install`` / ``uninstall`` print or apply, and
the Terraform ``federation`` module runs. Nothing here runs inside a control plane (that is
:mod:`federation.controlplane.kube`).

- :mod:`federation.install.manifests` -- the objects one cluster gets (pure);
- :mod:`federation.install.apply` -- server-side apply and delete of them.
"""
