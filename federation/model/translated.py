"""The TrafficPolicies in force: meshfed's own and those made from other projects' routing
documents -- Istio's VirtualService and DestinationRule
(:mod:`federation.model.istio_translate`) and Gateway API's HTTPRoute on a Service
(:mod:`federation.model.gateway_api`). One service takes one source. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from federation.model.gateway_api import translate_routes
from federation.model.istio_translate import Problem, Translation, global_name, translate
from federation.model.policy import TrafficPolicy

#: Which kinds of documents make a service's policy, as a problem message names them.
_SOURCES = "a TrafficPolicy, Istio's VirtualService/DestinationRule, or a Gateway API HTTPRoute"


def effective_traffic_policies(
    documents: Sequence[BaseModel],
) -> tuple[list[TrafficPolicy], list[Problem]]:
    """The TrafficPolicies in force: those among ``documents``, and those translated from the
    VirtualServices, DestinationRules and HTTPRoutes among them; with the problems found.

    A service whose policy two sources would make keeps the first of: its own TrafficPolicy,
    the Istio documents' policy, the HTTPRoute's; the others are a problem (the controller
    refuses them at apply time, so only documents stored by an older version can have one).
    """
    own = {p.target: p for p in documents if isinstance(p, TrafficPolicy)}
    claimed: dict[tuple[str, str], list[str]] = {
        t: [f"TrafficPolicy {p.metadata.namespace}/{p.metadata.name}"] for t, p in own.items()
    }
    merged: dict[tuple[str, str], TrafficPolicy] = dict(own)
    problems: list[Problem] = []
    translations: list[Translation] = [translate(documents), translate_routes(documents)]
    for translation in translations:
        problems += translation.problems
        for target, sources in sorted(translation.sources.items()):
            if target in claimed:
                problems.append(
                    Problem(
                        (*sources, *claimed[target]),
                        f"{global_name(target)} has both: a service takes {_SOURCES}, one of them",
                    )
                )
                continue
            claimed[target] = sources
            merged[target] = translation.policies[target]
    return [merged[t] for t in sorted(merged)], problems
