"""AuthorizationPolicy: Istio's semantics in Python (evaluate) and as Envoy RBAC filters."""

from __future__ import annotations

import pytest
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter

from federation.controlplane.generate.rbac import envoy_policy, rbac_filters, string_matcher
from federation.errors import InvalidDocumentError
from federation.model.authz import AuthorizationPolicy, Request, evaluate
from federation.model.documents import load_documents

FRONTEND = "spiffe://example.org/ns/demo/sa/frontend"
INTRUDER = "spiffe://example.org/ns/demo/sa/intruder"
OTHER_NS = "spiffe://example.org/ns/prod/sa/frontend"


def _policy(text: str) -> AuthorizationPolicy:
    [doc] = load_documents(text)
    assert isinstance(doc, AuthorizationPolicy)
    return doc


ALLOW_FRONTEND = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: demo}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["example.org/ns/demo/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*", "/"]}}]
""")
DENY_ADMIN = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: demo}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
""")
DRY_RUN_DENY_ALL = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: lockdown, namespace: meshfed-system, annotations: {istio.io/dry-run: "true"}}
spec: {}
""")


def test_istio_semantics_deny_first_then_allow_then_default() -> None:
    policies = [ALLOW_FRONTEND, DENY_ADMIN]
    assert evaluate(policies, Request(FRONTEND, path="/api/x")).allowed
    assert evaluate(policies, Request(FRONTEND, path="/")).allowed
    denied = evaluate(policies, Request(INTRUDER, path="/api/x"))
    assert not denied.allowed and "no rule of the ALLOW policies" in denied.reason
    admin = evaluate(policies, Request(FRONTEND, path="/admin/users"))
    assert not admin.allowed and "DENY policy demo/no-admin" in admin.reason  # DENY beats ALLOW
    assert not evaluate(policies, Request(FRONTEND, method="POST", path="/api/x")).allowed
    assert not evaluate(policies, Request(None, path="/api/x")).allowed  # no mTLS: no principal
    # no ALLOW policy selects the workload: allowed (Istio's default), unless mesh-wide deny
    assert evaluate([DENY_ADMIN], Request(INTRUDER)).allowed
    assert not evaluate([DENY_ADMIN], Request(INTRUDER), default_allow=False).allowed


def test_dry_run_changes_nothing_and_says_what_it_would_deny() -> None:
    decision = evaluate([DRY_RUN_DENY_ALL], Request(INTRUDER))
    assert decision.allowed and decision.would_deny_dry_run == ("meshfed-system/lockdown",)
    assert DRY_RUN_DENY_ALL.dry_run and not ALLOW_FRONTEND.dry_run


def test_selection_by_namespace_labels_and_the_root_namespace() -> None:
    assert ALLOW_FRONTEND.selects("demo", {"app": "echo", "v": "1"})
    assert not ALLOW_FRONTEND.selects("demo", {"app": "other"})
    assert not ALLOW_FRONTEND.selects("prod", {"app": "echo"})
    assert DENY_ADMIN.selects("demo", {})  # no selector: every workload of its namespace
    assert DRY_RUN_DENY_ALL.selects("anything", {})  # root namespace: mesh-wide


def test_sources_by_namespace_and_negations() -> None:
    policy = _policy("""
apiVersion: meshfed.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ns, namespace: demo}
spec:
  rules: [{from: [{source: {namespaces: ["demo"], notPrincipals: ["*/sa/intruder"]}}]}]
""")
    assert evaluate([policy], Request(FRONTEND)).allowed
    assert not evaluate([policy], Request(INTRUDER)).allowed
    assert not evaluate([policy], Request(OTHER_NS)).allowed


def test_sources_by_cluster_claim() -> None:
    policy = _policy("""
apiVersion: meshfed.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: from-aws, namespace: demo}
spec:
  rules: [{from: [{source: {clusters: ["aws-*"], notClusters: ["aws-eu-west-1"]}}]}]
""")
    assert evaluate([policy], Request(FRONTEND, cluster="aws-us-east-1")).allowed
    assert not evaluate([policy], Request(FRONTEND, cluster="aws-eu-west-1")).allowed
    assert not evaluate([policy], Request(FRONTEND, cluster="gcp-europe-west1")).allowed
    assert not evaluate([policy], Request(FRONTEND)).allowed  # an SVID without a claim


def test_clusters_become_a_dns_san_matcher_on_the_cluster_claim() -> None:
    from envoy.extensions.rbac.principals.mtls_authenticated.v3 import mtls_authenticated_pb2

    policy = _policy("""
apiVersion: meshfed.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: from-east, namespace: demo}
spec:
  rules: [{from: [{source: {clusters: ["east"], principals: ["*/sa/frontend"]}}]}]
""")
    envoy = envoy_policy(policy.spec.rules[0], [8080])
    assert envoy is not None
    [both] = envoy.principals
    cluster = both.and_ids.ids[1].custom
    assert cluster.name == "envoy.rbac.principals.mtls_authenticated"
    config = mtls_authenticated_pb2.Config()
    cluster.typed_config.Unpack(config)
    assert config.san_matcher.san_type == config.san_matcher.DNS
    assert config.san_matcher.matcher.safe_regex.regex == r"east\.cluster\.meshfed\.internal"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{action: PERMIT}", "spec.action"),
        ("{rules: [{to: [{operation: {methods: [get]}}]}]}", "methods"),
        ("{rules: [{to: [{operation: {ports: ['http']}}]}]}", "ports"),
        ("{rules: [{to: [{operation: {paths: ['/a*b']}}]}]}", "paths"),
        ("{rules: [{from: [{source: {principals: ['a*b*']}}]}]}", "principals"),
        ("{rules: [{form: []}]}", "form"),
        ("{rules: [{from: [{source: {clusters: ['East.1']}}]}]}", "clusters"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(spec: str, field: str) -> None:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: bad, namespace: demo}}\nspec: {spec}\n"
    )
    with pytest.raises(InvalidDocumentError) as err:
        load_documents(text)
    assert "document 1 (AuthorizationPolicy demo/bad)" in str(err.value) and field in str(err.value)


def _config(f) -> rbac_filter.RBAC:  # type: ignore[no-untyped-def]
    config = rbac_filter.RBAC()
    f.typed_config.Unpack(config)
    return config


def test_rbac_filters_deny_before_allow_with_dry_run_in_shadow_rules() -> None:
    filters = rbac_filters([ALLOW_FRONTEND, DENY_ADMIN, DRY_RUN_DENY_ALL], (8080, 18080))
    assert [f.name for f in filters] == [
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac.allow",
    ]
    deny, allow = (_config(f) for f in filters)
    assert list(deny.rules.policies) == ["demo.no-admin[0]"] and deny.rules.action == 1  # DENY
    assert list(allow.rules.policies) == ["demo.echo-callers[0]"] and allow.rules.action == 0
    # the dry-run ALLOW policy without rules: shadow rules with no policy (would deny all)
    assert allow.HasField("shadow_rules") and not allow.shadow_rules.policies
    principal = allow.rules.policies["demo.echo-callers[0]"].principals[0]
    assert principal.authenticated.principal_name.exact == FRONTEND
    # nothing selects: no filter at all; mesh-wide deny: an ALLOW filter without policies
    assert rbac_filters([], (8080,)) == []
    [deny_all] = rbac_filters([], (8080,), default_allow=False)
    assert _config(deny_all).rules.action == 0 and not _config(deny_all).rules.policies


def test_ports_are_resolved_per_filter_chain() -> None:
    rule = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: demo}
spec: {rules: [{to: [{operation: {ports: ["9090"]}}]}]}
""").spec.rules[0]
    assert envoy_policy(rule, (8080, 18080)) is None
    assert envoy_policy(rule, (9090, 19090)) is not None
    assert envoy_policy(rule, (7000, 9090)) is not None  # the target port counts too


def test_globs_become_envoy_string_matchers() -> None:
    assert string_matcher("/api/*").prefix == "/api/"
    assert string_matcher("*.png").suffix == ".png"
    assert string_matcher("GET").exact == "GET"
    assert string_matcher("*").safe_regex.regex == ".*"


def test_grpc_servers_get_only_what_grpc_rbac_can_check_erring_towards_denial() -> None:
    from federation.controlplane.generate.rbac import grpc_rbac_filters

    allow = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-east, namespace: demo}
spec:
  rules:
  - from: [{source: {principals: ["*/sa/frontend"], clusters: ["east"]}}]
  - from: [{source: {principals: ["*/sa/admin"]}}]
""")
    deny = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-intruder-from-west, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["*/sa/intruder"], clusters: ["west"]}}]}]
""")
    filters = grpc_rbac_filters([allow, deny, DRY_RUN_DENY_ALL], [8080])
    assert [f.name for f in filters] == [
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac.allow",
    ]
    deny_config, allow_config = (_config(f) for f in filters)
    # no custom (cluster) principal anywhere: gRPC would NACK it
    assert "mtls_authenticated" not in str(deny_config) + str(allow_config)
    # DENY lost its cluster condition: it denies intruder from anywhere
    [denied] = deny_config.rules.policies.values()
    assert denied.principals[0].authenticated.principal_name.suffix == "/sa/intruder"
    # ALLOW lost the rule that needed a cluster: only admin is allowed
    [allowed] = allow_config.rules.policies.values()
    assert allowed.principals[0].authenticated.principal_name.suffix == "/sa/admin"
    # dry-run policies are left out: no shadow rules
    assert not allow_config.HasField("shadow_rules") and not deny_config.HasField("shadow_rules")


def test_tcp_ports_get_network_rbac_without_http_fields_erring_towards_denial() -> None:
    from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac

    from federation.controlplane.generate.rbac import network_rbac_filters

    allow = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db, namespace: demo}
spec:
  rules:
  - from: [{source: {principals: ["*/sa/frontend"]}}]
    to: [{operation: {methods: ["GET"]}}]
  - from: [{source: {principals: ["*/sa/admin"]}}]
    to: [{operation: {ports: ["5432"]}}]
""")
    deny = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-intruder, namespace: demo}
spec:
  action: DENY
  rules: [{from: [{source: {principals: ["*/sa/intruder"]}}], to: [{operation: {paths: ["/x"]}}]}]
""")
    filters = network_rbac_filters([allow, deny], [5432, 15432], "inbound_tcp_15432")
    assert [f.name for f in filters] == [
        "envoy.filters.network.rbac.deny",
        "envoy.filters.network.rbac.allow",
    ]
    deny_config, allow_config = network_rbac.RBAC(), network_rbac.RBAC()
    filters[0].typed_config.Unpack(deny_config)
    filters[1].typed_config.Unpack(allow_config)
    # DENY lost its path: it closes intruder's connections whatever they carry
    [denied] = deny_config.rules.policies.values()
    assert [p.WhichOneof("rule") for p in denied.permissions] == ["any"]
    # ALLOW lost the rule that needed a method: only admin may connect
    [allowed] = allow_config.rules.policies.values()
    assert allowed.principals[0].authenticated.principal_name.suffix == "/sa/admin"
    assert "url_path" not in str(allow_config) and "header" not in str(allow_config)


ISTIO_ALLOW = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: demo}
spec:
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/demo/sa/frontend"],
               notPrincipals: ["spiffe://cluster.local/ns/demo/sa/old"]}
    - source: {principals: ["other.org/ns/demo/sa/frontend", "*/sa/frontend"]}
""")


def test_istio_s_cluster_local_names_the_federation_s_trust_domain() -> None:
    """As in Istio (trustdomain.ReplaceTrustDomainAliases), ``cluster.local`` in a principal
    points at the mesh's own trust domain: an Istio policy keeps admitting its callers in a
    federation of ``example.org``; the stored document stays as written."""
    from federation.controlplane.registry import RegistryState
    from federation.model.authz import for_trust_domain
    from federation.model.workload import WorkloadEntry

    enforced = for_trust_domain(ISTIO_ALLOW, "example.org")
    first, second = (item.source for item in enforced.spec.rules[0].from_ or [])
    assert first.principals == ["example.org/ns/demo/sa/frontend"]
    assert first.not_principals == ["spiffe://example.org/ns/demo/sa/old"]
    assert second.principals == ["other.org/ns/demo/sa/frontend", "*/sa/frontend"]
    assert ISTIO_ALLOW.spec.rules[0].from_[0].source.principals == [  # type: ignore[index]
        "cluster.local/ns/demo/sa/frontend"
    ]
    assert for_trust_domain(ALLOW_FRONTEND, "example.org") is ALLOW_FRONTEND  # nothing to do
    assert evaluate([enforced], Request(FRONTEND)).allowed
    assert not evaluate([ISTIO_ALLOW], Request("spiffe://example.org/ns/demo/sa/old")).allowed

    # what the generators and explain read: the registry's policies, as enforced
    [entry] = load_documents("""
apiVersion: meshfed.io/v1alpha1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: demo}
spec: {service: echo, address: 127.0.0.1, locality: aws/us-east-1/us-east-1a,
       ports: [{name: http, port: 80}]}
""")
    assert isinstance(entry, WorkloadEntry)
    state = RegistryState(
        authorization_policies={ISTIO_ALLOW.key: ISTIO_ALLOW}, trust_domain="example.org"
    )
    [selected] = state.authorization_policies_for(entry)
    assert selected.spec.rules[0].from_[0].source.principals == [  # type: ignore[index]
        "example.org/ns/demo/sa/frontend"
    ]
    assert state.authorization_policies[ISTIO_ALLOW.key] is ISTIO_ALLOW  # as written


def test_a_principal_of_another_trust_domain_is_applied_with_a_warning_naming_it() -> None:
    from federation.model.authz import trust_domain_warnings

    [warning] = trust_domain_warnings(ISTIO_ALLOW, "example.org")
    assert warning.startswith(
        "spec.rules[0].from[1].source.principals[0]: 'other.org/ns/demo/sa/frontend' names"
        " trust domain 'other.org', not this federation's 'example.org': no caller carries it"
    ), warning
    assert trust_domain_warnings(ALLOW_FRONTEND, "example.org") == []


WHEN = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: needs-token, namespace: demo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["demo"]}}]
    when:
    - {key: "request.headers[X-Token]", values: ["open-*"], notValues: ["open-nothing"]}
    - {key: source.ip, values: ["127.0.0.0/8"]}
    - {key: destination.port, values: ["8080"]}
    - {key: connection.sni, values: ["outbound_.8080_*"]}
""")


def test_when_conditions_are_anded_values_ored_and_not_values_negated() -> None:
    ok = Request(FRONTEND, ports=(8080,), headers={"x-token": "open-sesame"},
                 source_ip="127.0.1.5", sni="outbound_.8080_._.echo.demo.svc.clusterset.local")  # fmt: skip
    assert evaluate([WHEN], ok).allowed
    for changed in (
        {"headers": {}},
        {"headers": {"x-token": "open-nothing"}},
        {"headers": {"x-token": "closed"}},
        {"source_ip": "10.0.0.1"},
        {"ports": (9090,)},
        {"sni": "outbound_.9090_._.echo.demo.svc.clusterset.local"},
        {"principal": OTHER_NS},
    ):
        request = _replace(ok, **changed)
        assert not evaluate([WHEN], request).allowed, changed


def _replace(request: Request, **changes: object) -> Request:
    from dataclasses import replace

    return replace(request, **changes)  # type: ignore[arg-type]


def test_when_conditions_become_anded_envoy_principals_and_permissions() -> None:
    [rule] = WHEN.spec.rules
    assert envoy_policy(rule, (9090, 9091)) is None  # destination.port cannot hold there
    policy = envoy_policy(rule, (8080, 18080))
    assert policy is not None
    [principal] = policy.principals
    source, header, not_header, remote_ip = principal.and_ids.ids
    assert source.authenticated.principal_name.safe_regex.regex.startswith("spiffe://")
    assert header.header.name == "x-token" and header.header.string_match.prefix == "open-"
    assert not_header.not_id.header.string_match.exact == "open-nothing"
    assert remote_ip.direct_remote_ip.address_prefix == "127.0.0.0"
    assert remote_ip.direct_remote_ip.prefix_len.value == 8
    [permission] = policy.permissions
    anything, sni = permission.and_rules.rules
    assert anything.any and sni.requested_server_name.prefix == "outbound_.8080_"


def test_tcp_ports_and_grpc_servers_drop_the_conditions_they_cannot_see_towards_denial() -> None:
    from federation.controlplane.generate.rbac import _without_clusters, tcp_only

    assert tcp_only(WHEN).spec.rules == []  # an ALLOW rule on a header: nothing allowed
    deny = WHEN.model_copy(update={"spec": WHEN.spec.model_copy(update={"action": "DENY"})})
    [rule] = tcp_only(deny).spec.rules  # a DENY rule matches more without the header
    assert [c.key for c in rule.when or []] == ["source.ip", "destination.port", "connection.sni"]
    assert _without_clusters(WHEN).spec.rules == []  # gRPC cannot check the SNI


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rules: [{when: [{key: 'request.auth.claims[iss]', values: [x]}]}]",
         "not supported by meshfed: JWT (RequestAuthentication) is not supported yet"),
        ("rules: [{when: [{key: remote.ip, values: [10.0.0.1]}]}]", "'remote.ip': not supported by meshfed yet"),
        ("rules: [{when: [{key: source.nowhere, values: [x]}]}]", "is not a condition key"),
        ("rules: [{when: [{key: source.ip}]}]", "give values, notValues or both"),
        ("rules: [{when: [{key: source.ip, values: [not-an-ip]}]}]", "is not an IP address or CIDR block"),
        ("rules: [{from: [{source: {requestPrincipals: ['*']}}]}]",
         'spec.rules.0.from.0.source.requestPrincipals: not supported by meshfed: JWT'),
        ("rules: [{to: [{operation: {hosts: [a.example]}}]}]",
         "spec.rules.0.to.0.operation.hosts: not supported by meshfed yet"),
        ("{action: CUSTOM, provider: {name: ext}}", "not supported by meshfed: 'CUSTOM'"),
    ],
)  # fmt: skip
def test_istio_fields_meshfed_cannot_check_are_refused_with_the_reason(spec, expected) -> None:
    with pytest.raises(InvalidDocumentError) as err:
        load_documents(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: p, namespace: demo}}\nspec: {spec if spec.startswith('{') else '{' + spec + '}'}\n"
        )
    assert expected in "\n".join(err.value.problems)


def test_ip_blocks_and_not_ports() -> None:
    policy = _policy("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: demo}
spec:
  rules:
  - from: [{source: {ipBlocks: ["127.0.1.0/24"], notIpBlocks: ["127.0.1.9"]}}]
    to: [{operation: {notPorts: ["9090"]}}]
""")
    allowed = Request(FRONTEND, ports=(8080,), source_ip="127.0.1.5")
    assert evaluate([policy], allowed).allowed
    assert not evaluate([policy], _replace(allowed, source_ip="127.0.1.9")).allowed
    assert not evaluate([policy], _replace(allowed, source_ip="127.0.2.5")).allowed
    assert not evaluate([policy], _replace(allowed, ports=(9090,))).allowed
    [rule] = policy.spec.rules
    assert envoy_policy(rule, (9090,)) is None
