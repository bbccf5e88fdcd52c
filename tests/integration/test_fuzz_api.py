"""Issue #35: the controller's REST API fuzzed from its own OpenAPI document (schemathesis,
driving hypothesis) against a real ``meshfed controller serve``: requests that fit the
schema and requests that break it (negative mode), authenticated with the admin token.
Nothing may answer 5xx, and a refused request (4xx) may change nothing stored.

A bounded pass (:data:`EXAMPLES` per operation and mode) runs here; ``bench/fuzz_api.py``
runs the same with more examples.
"""

from __future__ import annotations

import os

import pytest

from tests.fuzzing import FuzzTarget, fuzz_cases, fuzz_documents, fuzz_operation
from tests.integration.harness import ControllerHandle

pytestmark = pytest.mark.integration

#: Examples per operation and generation mode in CI (MESHFED_FUZZ_EXAMPLES overrides).
EXAMPLES = int(os.environ.get("MESHFED_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    from tests.integration.conftest import make_mesh_home, owned_processes

    base = tmp_path_factory.mktemp("fuzz")
    with owned_processes(base) as procs:
        controller = ControllerHandle(procs, make_mesh_home(base))
        controller.start()
        yield FuzzTarget.for_controller(controller)


@pytest.mark.parametrize(("mode", "label"), fuzz_cases())
def test_fuzz_the_controller_api(target, mode, label) -> None:
    fuzz_operation(target, label, mode, EXAMPLES)
    assert target.controller.proc is not None and target.controller.proc.poll() is None


def test_fuzz_documents_of_every_kind(target) -> None:
    """Documents of every known kind with arbitrary metadata and spec, applied and deleted."""
    fuzz_documents(target, EXAMPLES * 4)
