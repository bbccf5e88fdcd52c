"""The default locality decision: nearest healthy first, contiguous priorities, weights >= 1."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from federation.lb.locality import LocalityGroup, assign_priorities, proximity_rank
from federation.model.locality import Locality

CALLER = Locality("aws/us-east-1", "us-east-1a")


def test_default_order_zone_region_cloud_other() -> None:
    groups = [
        LocalityGroup(Locality("gcp/europe-west1", "europe-west1-b"), 2, 2),
        LocalityGroup(Locality("aws/eu-west-1", "eu-west-1a"), 2, 2),
        LocalityGroup(Locality("aws/us-east-1", "us-east-1b"), 2, 2),
        LocalityGroup(Locality("aws/us-east-1", "us-east-1a"), 2, 2),
    ]
    decisions = assign_priorities(CALLER, groups)
    assert [(d.locality.zone, d.priority) for d in decisions] == [
        ("us-east-1a", 0),
        ("us-east-1b", 1),
        ("eu-west-1a", 2),
        ("europe-west1-b", 3),
    ]
    assert decisions[0].reason == "same zone"
    assert decisions[3].reason == "other cloud"


def test_dead_local_zone_goes_last_and_next_zone_becomes_priority_zero() -> None:
    groups = [
        LocalityGroup(Locality("aws/us-east-1", "us-east-1a"), 0, 0),
        LocalityGroup(Locality("aws/us-east-1", "us-east-1b"), 1, 3),
    ]
    decisions = {d.locality.zone: d for d in assign_priorities(CALLER, groups)}
    assert decisions["us-east-1b"].priority == 0
    assert decisions["us-east-1b"].weight == 3
    assert decisions["us-east-1a"].priority == 1
    assert decisions["us-east-1a"].weight == 1
    assert "no healthy endpoint" in decisions["us-east-1a"].reason


_zones = st.sampled_from(["a", "b", "c"])
_regions = st.sampled_from(["aws/us-east-1", "aws/eu-west-1", "gcp/europe-west1", "local/lab"])
_groups = st.lists(
    st.builds(
        lambda r, z, h, extra: LocalityGroup(Locality(r, z), h, h + extra if h else 0),
        _regions,
        _zones,
        st.integers(0, 5),
        st.integers(0, 20),
    ),
    max_size=12,
    unique_by=lambda g: g.locality,
)


@given(_groups)
def test_properties(groups: list[LocalityGroup]) -> None:
    decisions = assign_priorities(CALLER, groups)
    assert len(decisions) == len(groups)
    assert all(d.weight >= 1 for d in decisions)
    priorities = sorted({d.priority for d in decisions})
    assert priorities == list(range(len(priorities)))  # contiguous from 0
    healthy = {g.locality for g in groups if g.healthy > 0}
    max_healthy = max((d.priority for d in decisions if d.locality in healthy), default=-1)
    for d in decisions:
        if d.locality not in healthy:
            assert d.priority > max_healthy  # dead localities never ahead of live ones
    for a in decisions:
        for b in decisions:
            both_healthy = a.locality in healthy and b.locality in healthy
            if both_healthy and proximity_rank(CALLER, a.locality) < proximity_rank(
                CALLER, b.locality
            ):
                assert a.priority < b.priority
    assert assign_priorities(CALLER, list(reversed(groups))) == decisions  # deterministic
