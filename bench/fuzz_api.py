"""A longer fuzzing pass of the controller's REST API than CI's (issue #35): schemathesis
generates requests from the controller's OpenAPI document (valid and, where an operation
takes input, invalid ones) and hypothesis generates documents of every known kind, all sent
over HTTPS with the admin token to a real ``meshfed controller serve``. A 5xx, or a refused
request that changed stored state, stops the run with the request that did it.

Printed: requests sent per operation, the statuses seen, and the time taken, beside the
same numbers of CI's bounded pass (20 examples) measured in the same run.

    python bench/fuzz_api.py [--examples 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzzing import FuzzTarget, fuzz_cases, fuzz_documents, fuzz_operation
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
        alive = controller.proc is not None and controller.proc.poll() is None
        print(f"controller still running: {alive}")


if __name__ == "__main__":
    main()
