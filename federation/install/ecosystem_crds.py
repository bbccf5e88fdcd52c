"""The official CRDs of the Istio and Gateway API kinds meshfed reads from a cluster (issue
#40), as their projects release them, shipped with meshfed (``crds/*.yaml.gz``). Pure.

- ``gateway-api``: HTTPRoute, GRPCRoute and ReferenceGrant of Gateway API **v1.6.1**,
  standard channel (kubernetes-sigs/gateway-api ``config/crd/standard/``, the files its
  ``standard-install.yaml`` is made of).
- ``istio``: VirtualService, DestinationRule, ServiceEntry, Sidecar, AuthorizationPolicy and
  PeerAuthentication of istio/istio commit ``86c9f01`` (2026-08,
  ``manifests/charts/base/files/crd-all.gen.yaml``).

Each comes with the annotation :data:`IF_ABSENT`: ``meshfed install --apply`` creates such a
CRD only when the cluster has none of that name, so an Istio or Gateway API installation
already there (perhaps newer) is left as it is. ``kubectl apply`` does not know the
annotation: with Istio or Gateway API installed, leave them out (``--ecosystem-crds none``).
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from typing import Any

import yaml

#: The sets of CRDs by name, and their files.
SETS = {"gateway-api": "gateway-api-v1.6.1.yaml.gz", "istio": "istio-86c9f01.yaml.gz"}
#: The annotation that makes ``install --apply`` create an object only when it is missing.
IF_ABSENT = "meshfed.io/install"
IF_ABSENT_VALUE = "if-absent"


@cache
def _load(name: str) -> tuple[dict[str, Any], ...]:
    data = (resources.files(__package__) / "crds" / SETS[name]).read_bytes()
    docs = yaml.load_all(
        gzip.decompress(data).decode(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    return tuple(d for d in docs if d)


def ecosystem_crds(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The CRDs of the sets ``names`` (keys of :data:`SETS`), each marked :data:`IF_ABSENT`,
    in the order given; new objects each call.

    Raises:
        KeyError: a name not in :data:`SETS`.
    """
    out = []
    for name in names:
        for crd in _load(name):
            meta = crd["metadata"]
            annotations = {**(meta.get("annotations") or {}), IF_ABSENT: IF_ABSENT_VALUE}
            out.append({**crd, "metadata": {**meta, "annotations": annotations}})
    return out
