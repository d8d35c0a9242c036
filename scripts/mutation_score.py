"""The steps of scripts/mutation.sh around `mutmut run`: configure a module's copy, then score its run.

    python scripts/mutation_score.py configure COPY/pyproject.toml MODULE "PYTEST SELECTION"
    python scripts/mutation_score.py score COPY MODULE COMMIT SECONDS COMMAND
    python scripts/mutation_score.py survivors|seconds MODULE.json     # for MUTATION_RERUN: an earlier score's

The score counts a mutant as killed when its tests failed, timed out or crashed (mutmut's killed, timeout and
segfault). Survivors named in the "Equivalent mutants" section of docs/testing.md are left out of the
denominator: score = killed / (mutants − equivalent). Survivors named in its "Survivors these machines cannot
kill" section (a difference only a GPU shows, or one mutmut's trampoline hides) stay in the denominator and are
listed apart. Every other survivor is unexplained and listed with its diff, to be killed by a test or argued
equivalent in docs/testing.md.
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

try:
    from tomllib import loads as load_toml
except ModuleNotFoundError:  # Python 3.10: the `toml` package, which mutmut itself reads its settings with there
    from toml import loads as load_toml

REPO = Path(__file__).resolve().parents[1]
ADDED_KEYS = ("only_mutate", "pytest_add_cli_args_test_selection")
CAUGHT = {"killed", "timeout", "segfault"}
MUTANT_NAME = re.compile(r"`(lit_vir\.[\w.]+__mutmut_\d+)`")


def configure(pyproject: Path, module: str, selection: str) -> None:
    """Add this module's `only_mutate` and test selection to the [tool.mutmut] table of the copy."""
    text = pyproject.read_text()
    table = load_toml(text).get("tool", {}).get("mutmut")
    if table is None:
        sys.exit(f"{pyproject}: no [tool.mutmut] table; scripts/mutation.sh needs the shared settings there")
    if clash := [key for key in ADDED_KEYS if key in table]:
        sys.exit(f"{pyproject}: [tool.mutmut] sets {clash}, which scripts/mutation.sh sets per module; remove them")
    added = f"only_mutate = {json.dumps([module])}\n"
    arguments = [" ".join(argument.split()) for argument in shlex.split(selection)]  # a -k may span lines
    added += f"pytest_add_cli_args_test_selection = {json.dumps(arguments)}\n"
    text = text.replace("[tool.mutmut]\n", "[tool.mutmut]\n" + added, 1)
    load_toml(text)  # still valid TOML
    pyproject.write_text(text)


EQUIVALENT = "## Equivalent mutants"
CANNOT_KILL_HERE = "## Survivors these machines cannot kill"


def listed_mutants(document: Path, heading: str = EQUIVALENT) -> set[str]:
    """Mutant names in backticks in one section of docs/testing.md: the equivalent mutants (left out of the
    score's denominator) or the survivors these machines cannot kill (counted as survivors, listed apart)."""
    text = document.read_text() if document.exists() else ""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0] if heading in text else ""
    return set(MUTANT_NAME.findall(section))


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text()) if cpuinfo.exists() else []
    return f"{names[0] if names else platform.processor()}, one core, {platform.system()}"


def score(work: Path, module: str, commit: str, seconds: int, command: str) -> None:
    from mutmut.stats import status_by_exit_code

    meta = work / "mutants" / f"{module}.meta"
    if not meta.exists():
        sys.exit(f"   no results in {meta}: mutmut did not run its mutants (see {work}.log)")
    exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
    status = {name: status_by_exit_code[code] for name, code in exit_codes.items()}
    counts = Counter(status.values())
    killed = sum(counts[name] for name in CAUGHT)
    listed = listed_mutants(REPO / "docs" / "testing.md")
    elsewhere = listed_mutants(REPO / "docs" / "testing.md", CANNOT_KILL_HERE)
    equivalent = sorted(name for name, state in status.items() if state not in CAUGHT and name in listed)
    wrongly_listed = sorted(name for name, state in status.items() if state in CAUGHT and name in listed | elsewhere)
    survivors = [name for name, state in status.items() if state not in CAUGHT and name not in listed]
    cannot_kill_here = sorted((name for name in survivors if name in elsewhere), key=natural)
    unexplained = sorted((name for name in survivors if name not in elsewhere), key=natural)
    considered = len(status) - len(equivalent)
    result = {
        "module": module,
        "mutants": len(status),
        "killed": killed,
        "equivalent": len(equivalent),
        "unexplained": len(unexplained),
        "cannot_kill_here": len(cannot_kill_here),
        "score": killed / considered if considered else None,
        "statuses": dict(counts),
        "unexplained_survivors": unexplained,
        "survivors_these_machines_cannot_kill": cannot_kill_here,
        "listed_as_equivalent_but_killed": wrongly_listed,
        "commit": commit,
        "seconds": seconds,
        "machine": machine(),
        "command": command,
    }
    (work.parent / f"{work.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    percent = "n/a" if result["score"] is None else f"{100 * result['score']:.1f}%"
    summary = (
        f"{module}: {killed} killed of {len(status)} mutants, {len(equivalent)} equivalent, "
        f"{len(cannot_kill_here)} only killable on a GPU or outside mutmut, "
        f"{len(unexplained)} unexplained survivors: score {killed}/{considered} = {percent} "
        f"({dict(counts)}; commit {commit}; {seconds} s on {result['machine']})"
    )
    diffs = [f"--- {name} ({status[name]})\n{show(work, name)}" for name in unexplained]
    if wrongly_listed:
        diffs.append("killed, yet listed as surviving in docs/testing.md: " + ", ".join(wrongly_listed))
    (work.parent / f"{work.name}.txt").write_text("\n".join([summary, "", *diffs]) + "\n")
    print(summary)
    for name in unexplained:
        print(f"   survived: {name}")
    print(f"   diffs: {work.parent / work.name}.txt")


def natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number)


def show(work: Path, name: str) -> str:
    """The mutant's diff, as `mutmut show` prints it."""
    shown = subprocess.run(["mutmut", "show", name], cwd=work, capture_output=True, text=True, check=False)
    return shown.stdout.strip() or shown.stderr.strip()


if __name__ == "__main__":
    step, *arguments = sys.argv[1:]
    if step == "configure":
        configure(Path(arguments[0]), arguments[1], arguments[2])
    elif step == "score":
        score(Path(arguments[0]), arguments[1], arguments[2], int(arguments[3]), arguments[4])
    elif step == "survivors":  # one per line: the earlier run's survivors not listed as equivalent since
        listed = listed_mutants(REPO / "docs" / "testing.md")
        earlier = json.loads(Path(arguments[0]).read_text())["unexplained_survivors"]
        for name in earlier:
            if name not in listed:
                print(name)
    elif step == "seconds":
        print(json.loads(Path(arguments[0]).read_text())["seconds"])
    else:
        sys.exit(f"unknown step {step!r}: configure, score, survivors or seconds")
