"""``TrafficPolicy`` and ``PriceTable`` (``meshfed.io/v1alpha1``): global traffic policy.

A TrafficPolicy targets one service by its global name and says how callers everywhere reach
it::

    apiVersion: meshfed.io/v1alpha1
    kind: TrafficPolicy
    metadata: {name: echo, namespace: demo}
    spec:
      host: echo.demo.svc.clusterset.local
      locality:                      # Istio LocalityLoadBalancerSetting semantics
        failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]
        failover: [{from: aws/us-east-1, to: aws/eu-west-1}]
        distribute: [{from: "aws/us-east-1/*", to: {"aws/us-east-1/*": 80, "aws/eu-west-1/*": 20}}]
      cost: {mode: prefer-cheaper, latencyBudgetMs: 50, maxCostPerGB: 0.05}
      split: {aws-us-east-1: 80, gcp-europe-west1: 20}   # percent per member cluster
      healthCheck: {intervalMs: 1000, timeoutMs: 1000, unhealthyThreshold: 2, healthyThreshold: 1}
      outlierDetection: {consecutive5xx: 3, intervalMs: 1000, baseEjectionTimeMs: 5000,
                         maxEjectionPercent: 100}
      retries: {attempts: 2, perTryTimeoutMs: 2000, retryOn: "connect-failure,reset,503"}
      timeoutMs: 15000

Defaults make failover happen (outlier detection on, 100 % max ejection, retries to another
priority). ``failover`` and ``distribute`` exclude each other (as in Istio). Checks that need
the federation (every ``split`` cluster is a member) are made by the controller.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from federation.model.workload import DNS_LABEL, ObjectMeta, _Strict

#: failoverPriority labels meshfed understands, and the locality part each one compares.
FAILOVER_LABELS: dict[str, str] = {
    "meshfed.io/cloud": "cloud",
    "topology.kubernetes.io/region": "region",
    "topology.kubernetes.io/zone": "zone",
    "topology.istio.io/subzone": "sub_zone",
    "meshfed.io/cluster": "cluster",
}
_GLOBAL_NAME = re.compile(
    r"^(?P<svc>[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)\.(?P<ns>[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)"
    r"\.svc\.clusterset\.local$"
)
_LOCALITY_PATTERN = re.compile(r"^[a-z0-9-]+(/[a-z0-9-]+){0,3}(/\*)?$|^\*$")
_DNS = re.compile(DNS_LABEL)


def _locality_pattern(value: str) -> str:
    if not _LOCALITY_PATTERN.match(value):
        raise ValueError(
            f"{value!r} must be a locality <cloud>/<region>[/<zone>[/<subzone>]], optionally"
            " ending in /* (or * alone)"
        )
    return value


def locality_matches(pattern: str, locality: str) -> bool:
    """True when ``locality`` (``aws/us-east-1/us-east-1a``) is ``pattern`` or under it
    (``aws/us-east-1/*``, ``aws/us-east-1``, ``*``)."""
    if pattern == "*":
        return True
    base = pattern.removesuffix("/*")
    return locality == base or locality.startswith(base + "/")


class Failover(_Strict):
    """When callers in region ``from`` fail over, go to region ``to`` first."""

    from_: str = Field(alias="from")
    to: str

    @field_validator("from_", "to")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _locality_pattern(value)


class Distribute(_Strict):
    """Callers matching ``from`` send ``to[pattern]`` percent to the localities matching it."""

    from_: str = Field(alias="from")
    to: dict[str, int]

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        return _locality_pattern(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, weight in value.items():
            _locality_pattern(pattern)
            if not 0 <= weight <= 100:
                raise ValueError(f"{pattern}: weight {weight} must be 0-100")
        if sum(value.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(value.values())}")
        return value


class LocalitySettings(_Strict):
    """Locality load balancing (Istio ``LocalityLoadBalancerSetting``)."""

    failover_priority: list[str] = Field(default_factory=list, alias="failoverPriority")
    failover: list[Failover] = Field(default_factory=list)
    distribute: list[Distribute] = Field(default_factory=list)

    @field_validator("failover_priority")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if label not in FAILOVER_LABELS:
                raise ValueError(f"unknown label {label!r} (known: {', '.join(FAILOVER_LABELS)})")
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> LocalitySettings:
        if self.failover and self.distribute:
            raise ValueError("failover and distribute cannot be used together (as in Istio)")
        return self


class CostSettings(_Strict):
    """What traffic may cost.

    ``mode``: ``off`` (locality rules only), ``prefer-cheaper`` (the cheapest path first, the
    locality rules break ties), ``optimize`` (the controller splits each caller locality's
    measured demand over the serving localities by a linear program -- egress dollars plus a
    latency charge of :data:`federation.lb.decision.OPTIMIZE_USD_PER_GB_PER_MS` per ms of
    RTT, within declared capacity x ``headroom`` (:mod:`federation.lb.optimizer`); until a
    locality's demand is measured, and behind the split for health failover, the priority
    order of price plus latency charge).
    ``latencyBudgetMs``: never prefer a locality whose RTT exceeds it while one within the
    budget has capacity. ``maxCostPerGB``: localities dearer than this (US$/GB) only as a last
    resort. Both apply in every mode. ``headroom`` (``optimize``; 0-1, default 0.8): the
    share of a locality's declared capacity (``WorkloadEntry spec.capacity.rps``) planned.
    """

    mode: Literal["off", "prefer-cheaper", "optimize"] = "off"
    latency_budget_ms: float | None = Field(default=None, gt=0, alias="latencyBudgetMs")
    max_cost_per_gb: float | None = Field(default=None, ge=0, alias="maxCostPerGB")
    headroom: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _headroom_needs_optimize(self) -> CostSettings:
        if self.headroom is not None and self.mode != "optimize":
            raise ValueError(f"headroom applies to mode optimize only (mode is {self.mode})")
        return self


class HealthCheckSettings(_Strict):
    """Envoy active health checks of the service's endpoints (``core.v3.HealthCheck``)."""

    interval_ms: int = Field(default=1000, ge=100, le=60000, alias="intervalMs")
    timeout_ms: int = Field(default=2000, ge=50, le=60000, alias="timeoutMs")
    unhealthy_threshold: int = Field(default=3, ge=1, le=10, alias="unhealthyThreshold")
    healthy_threshold: int = Field(default=1, ge=1, le=10, alias="healthyThreshold")


class OutlierDetectionSettings(_Strict):
    """Passive ejection (``cluster.v3.OutlierDetection``); on by default, 100 % may be ejected."""

    consecutive_5xx: int = Field(default=3, ge=1, le=100, alias="consecutive5xx")
    interval_ms: int = Field(default=1000, ge=100, le=60000, alias="intervalMs")
    base_ejection_time_ms: int = Field(default=5000, ge=100, le=600000, alias="baseEjectionTimeMs")
    max_ejection_percent: int = Field(default=100, ge=0, le=100, alias="maxEjectionPercent")


class RetrySettings(_Strict):
    """Route retries (``route.v3.RetryPolicy``); retries prefer another priority."""

    attempts: int = Field(default=2, ge=0, le=10)
    per_try_timeout_ms: int = Field(default=2000, ge=10, le=600000, alias="perTryTimeoutMs")
    retry_on: str = Field(
        default="connect-failure,reset,refused-stream,unavailable,503", alias="retryOn"
    )


class TrafficPolicySpec(_Strict):
    """``spec`` of a TrafficPolicy (see the module docstring)."""

    host: str
    locality: LocalitySettings = Field(default_factory=LocalitySettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    split: dict[str, int] | None = None
    health_check: HealthCheckSettings | None = Field(default=None, alias="healthCheck")
    outlier_detection: OutlierDetectionSettings | None = Field(
        default=None, alias="outlierDetection"
    )
    retries: RetrySettings | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=3600000, alias="timeoutMs")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _GLOBAL_NAME.match(value):
            raise ValueError(f"{value!r} must be a global name <svc>.<ns>.svc.clusterset.local")
        return value

    @field_validator("split")
    @classmethod
    def _split(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        for cluster, weight in value.items():
            if not _DNS.match(cluster):
                raise ValueError(f"{cluster!r} is not a cluster name (DNS label)")
            if not 0 <= weight <= 100:
                raise ValueError(f"{cluster}: weight {weight} must be 0-100")
        if sum(value.values()) != 100:
            raise ValueError(f"weights must sum to 100, not {sum(value.values())}")
        return value


class TrafficPolicy(_Strict):
    """A ``TrafficPolicy`` document."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["TrafficPolicy"]
    metadata: ObjectMeta
    spec: TrafficPolicySpec

    @property
    def target(self) -> tuple[str, str]:
        """``(namespace, service)`` of ``spec.host``."""
        m = _GLOBAL_NAME.match(self.spec.host)
        assert m is not None
        return (m.group("ns"), m.group("svc"))


PathClassName = Literal["same-zone", "cross-zone", "cross-region", "cross-continent", "cross-cloud"]


class PriceTableSpec(_Strict):
    """``spec`` of a PriceTable: a cloud's rates by path class, US$/GB, and their source."""

    cloud: str = Field(pattern=DNS_LABEL)
    source: str = Field(min_length=1, description="where the numbers come from")
    usd_per_gb: dict[PathClassName, float] = Field(alias="usdPerGB")

    @field_validator("usd_per_gb")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for path, rate in value.items():
            if rate < 0:
                raise ValueError(f"{path}: {rate} must be >= 0 (US$/GB)")
        return value


class PriceTable(_Strict):
    """A ``PriceTable`` document: overrides the built-in rates of one cloud (negotiated
    prices, private interconnects)."""

    api_version: Literal["meshfed.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["PriceTable"]
    metadata: ObjectMeta
    spec: PriceTableSpec
