"""Run mutmut's survivors against the suites that start real servers.

    .venv/bin/python tools/subprocess_mutants.py [--suite PATH ...] [-k EXPR]
        [FUNCTION ...]

mutmut links a mutant only to the tests that call its function in-process,
so code that runs only in a server started by a test (main, serve, probe, the
log's format) survives every mutant. mutmut's trampoline reads the mutant to
run from MUTANT_UNDER_TEST, which a child process inherits, and switches it on
only in the module the name starts with. A server the tests start runs
`python timercheck.py`, whose module is `__main__`: so the mutant is named
`__main__.x_...` here, and it is on in the servers and off in the tests
themselves. Prints each survivor (of the functions named, or all) as killed,
survived or timeout. Run after `mutmut run`. The suite is
tests/test_entry_point.py unless --suite names others.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
# mutmut's copy of the project holds the code and the tests, not the README.
SUITES = ["tests/test_entry_point.py"]


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


def as_script(mutant: str) -> str:
    return mutant.replace("timercheck.", "__main__.", 1) if mutant else ""


def verdict(mutant: str, suites: list[str]) -> str:
    """killed, survived, or timeout (a hang the suite would not get past)."""
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
            + ["-p", "no:randomly", *suites],
            cwd=ROOT / "mutants",
            env={**os.environ, "MUTANT_UNDER_TEST": as_script(mutant)},
            capture_output=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "killed" if run.returncode != 0 else "survived"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", action="append", default=[])
    parser.add_argument("-k", dest="expression")
    parser.add_argument("functions", nargs="*")
    args = parser.parse_args()
    suites = args.suite or SUITES
    if args.expression:
        suites = [*suites, "-k", args.expression]
    if verdict("", suites) != "survived":
        sys.exit("the suites fail with no mutant: nothing they say would count")
    for mutant in survivors(args.functions):
        print(f"{mutant}: {verdict(mutant, suites)}", flush=True)


if __name__ == "__main__":
    main()
