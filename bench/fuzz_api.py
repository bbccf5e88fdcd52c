"""A longer fuzzing pass of the controller's APIs than CI's (issue #35): schemathesis
generates requests from the controller's OpenAPI document (valid and, where an operation
takes input, invalid ones) and hypothesis generates documents of every known kind, all sent
over HTTPS with the admin token to a real ``meshfed controller serve``; then hypothesis
generates ``ClusterReport`` streams to its sync service from a member's control-plane
certificate (:func:`tests.fuzzing.fuzz_cluster_reports`). A 5xx / an UNKNOWN or INTERNAL
stream, or a refused request that changed stored state, stops the run with what did it.

Printed: requests and streams sent, how the streams ended, and the time taken, beside the
same numbers of CI's bounded pass (20 examples; 80 streams) measured in the same run.

    python bench/fuzz_api.py [--examples 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collections import Counter

from tests.fuzzing import (
    FuzzTarget,
    fuzz_cases,
    fuzz_cluster_reports,
    fuzz_documents,
    fuzz_operation,
    sync_channel,
    sync_members,
)
from tests.integration.conftest import make_mesh_home, owned_processes
from tests.integration.harness import ControllerHandle


def one_pass(target: FuzzTarget, examples: int) -> tuple[int, float]:
    """Fuzz every operation and the documents with ``examples`` each; ``(cases, seconds)``."""
    started = time.perf_counter()
    cases = fuzz_cases()
    for mode, label in cases:
        fuzz_operation(target, label, mode, examples)
    fuzz_documents(target, examples * 4)
    return len(cases) * examples + examples * 4, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=500, help="examples per operation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, owned_processes(Path(tmp)) as procs:
        controller = ControllerHandle(procs, make_mesh_home(Path(tmp)))
        controller.start()
        target = FuzzTarget.for_controller(controller)
        for name, examples in (("baseline (CI)", 20), ("this run", args.examples)):
            sent, seconds = one_pass(target, examples)
            print(
                f"{name:>14}: {sent:>6} generated requests (at most) in {seconds:6.1f} s:"
                " no 5xx, no refused request changed state"
            )
        sync_members(controller)
        target.state_paths = (*target.state_paths, "/v1/imports")
        for name, streams in (("baseline (CI)", 80), ("this run", args.examples * 4)):
            ended: Counter[str] = Counter()
            started = time.perf_counter()
            with sync_channel(controller, "b") as stub:
                fuzz_cluster_reports(target, stub, "b", streams, ended)
            print(
                f"{name:>14}: {streams:>6} generated sync streams in"
                f" {time.perf_counter() - started:6.1f} s, ended {dict(ended)}"
            )
        alive = controller.proc is not None and controller.proc.poll() is None
        print(f"controller still running: {alive}")


if __name__ == "__main__":
    main()
