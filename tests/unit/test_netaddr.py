"""federation.netaddr: the ports tests and ``meshfed up`` pick."""

from __future__ import annotations

import random

from federation import netaddr


def test_free_port_never_picks_a_port_meshfed_has_a_fixed_default_for(monkeypatch) -> None:
    """A CI run failed because a control plane's certificate service was given 15001 -- the
    outbound port of the sidecars of another test, which share it (``SO_REUSEPORT``)."""
    fixed = [15000, 15001, 15006, 15010, 15012, 15014, 15020, 15021, 15080, 15090, 15443, 15444]
    picks = iter([*fixed, 23456])
    monkeypatch.setattr(random, "randrange", lambda low, high: next(picks))
    monkeypatch.setattr(netaddr, "_ephemeral_low", lambda: 32768)
    monkeypatch.setattr(netaddr, "_handed_out", set())
    monkeypatch.setattr(netaddr, "_bindable", lambda host, port: True)
    assert netaddr.free_port() == 23456
