"""Run mutmut's survivors against the suites that start real servers.

    .venv/bin/python tools/subprocess_mutants.py [FUNCTION ...]

mutmut links a mutant only to the tests that call its function in-process,
so code that runs only in a server started by a test (main, serve, probe, the
log's format) survives every mutant. mutmut's trampoline reads the mutant to
run from MUTANT_UNDER_TEST, which a child process inherits: run here with it
set, the server suites do test those mutants. Prints each survivor (of the
functions named, or all) as killed or survived. Run after `mutmut run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
# mutmut's copy of the project holds the code and the tests, not the README.
SUITES = ["tests/test_settings.py"]


def survivors(functions: list[str]) -> list[str]:
    results = subprocess.run(
        [str(ROOT / ".venv/bin/mutmut"), "results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = re.findall(r"^\s*(\S+): survived$", results, re.M)
    return [n for n in names if not functions or any(f in n for f in functions)]


def fails(mutant: str) -> bool:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *SUITES],
        cwd=ROOT / "mutants",
        env={**os.environ, "MUTANT_UNDER_TEST": mutant},
        capture_output=True,
        timeout=600,
    )
    return run.returncode != 0


def main() -> None:
    if fails(""):
        sys.exit("the suites fail with no mutant: nothing they say would count")
    for mutant in survivors(sys.argv[1:]):
        print(f"{mutant}: {'killed' if fails(mutant) else 'survived'}", flush=True)


if __name__ == "__main__":
    main()
