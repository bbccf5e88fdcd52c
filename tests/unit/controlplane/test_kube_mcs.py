"""ServiceExport conditions (KEP-1645) as the control plane writes them. Pure."""

from __future__ import annotations

from federation.controlplane.kube.mcs import export_conditions

EXPORT = {"metadata": {"namespace": "demo", "name": "echo"}, "status": {}}
SERVICE = {"metadata": {"namespace": "demo", "name": "echo"}, "spec": {"type": "ClusterIP"}}
NOW = "2026-12-03T10:00:00Z"


def _by_type(conditions: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conditions}


def test_exported_is_ready_and_a_conflict_says_why() -> None:
    ok = _by_type(export_conditions(EXPORT, SERVICE, ("Exported", ""), NOW))
    assert (ok["Valid"]["status"], ok["Ready"]["status"], ok["Conflict"]["status"]) == (
        "True",
        "True",
        "False",
    )
    clash = _by_type(export_conditions(EXPORT, SERVICE, ("Conflict", "port http differs"), NOW))
    assert clash["Ready"]["reason"] == "Conflict"
    assert clash["Conflict"]["status"] == "True" and clash["Conflict"]["message"] == (
        "port http differs"
    )


def test_pending_carries_the_controllers_reason_else_a_generic_one() -> None:
    """A cluster whose gateway has no address yet: the user sees why in kubectl describe."""
    why = "not imported yet: cluster a has no gateway address"
    pending = _by_type(export_conditions(EXPORT, SERVICE, ("Pending", why), NOW))
    assert pending["Ready"]["status"] == "False" and pending["Ready"]["reason"] == "Pending"
    assert pending["Ready"]["message"] == why
    unknown = _by_type(export_conditions(EXPORT, SERVICE, None, NOW))
    assert "has not listed this export yet" in unknown["Ready"]["message"]


def test_no_service_is_invalid_and_not_ready() -> None:
    conditions = _by_type(export_conditions(EXPORT, None, ("Exported", ""), NOW))
    assert conditions["Valid"]["reason"] == "NoService"
    assert conditions["Ready"]["status"] == "False"
