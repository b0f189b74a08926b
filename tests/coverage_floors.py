"""Coverage per package, and the floors `make test` enforces.

Reads the data `pytest --cov` combined (``.coverage``, the servers' and workers' included), folds in
any process's file written after that, prints lines and branches per top-level package and the least
covered files of the packages with a floor, and exits 1 naming each package under its floor.

    .venv/bin/python -m tests.coverage_floors                     # the floors below
    .venv/bin/python -m tests.coverage_floors --floor billing=99  # a stricter one, e.g. to see it fail

coverage's own ``fail_under`` is one figure for everything; these floors are per package, and for lines
and branches apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import coverage
from coverage.exceptions import NoDataError

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("billing", "gateways", "schema", "resolvers", "whitebill", "models")
# package: (lines %, branches %)
FLOORS: dict[str, tuple[float, float]] = {"billing": (90.0, 85.0), "gateways": (90.0, 85.0)}
LEAST_COVERED = 8


@dataclass
class Tally:
    statements: int = 0
    missing: int = 0
    branches: int = 0
    missing_branches: int = 0

    @classmethod
    def of(cls, summary: dict[str, int]) -> Tally:
        """One file's, from its summary in coverage's JSON report."""
        return cls(
            summary["num_statements"], summary["missing_lines"], summary["num_branches"], summary["missing_branches"]
        )

    def add(self, other: Tally) -> None:
        self.statements += other.statements
        self.missing += other.missing
        self.branches += other.branches
        self.missing_branches += other.missing_branches

    @property
    def lines(self) -> float:
        return 100.0 * (self.statements - self.missing) / self.statements if self.statements else 100.0

    @property
    def branch(self) -> float:
        return 100.0 * (self.branches - self.missing_branches) / self.branches if self.branches else 100.0


def measured_files() -> dict[str, Tally]:
    """Every measured file (its path relative to the repository) and its figures, from the JSON report."""
    cov = coverage.Coverage(data_file=str(ROOT / ".coverage"), config_file=str(ROOT / "pyproject.toml"))
    try:
        cov.load()
    except NoDataError:
        pass
    # A process that saved after pytest-cov combined (none should) is not lost: combine appends it.
    try:
        cov.combine(data_paths=[str(ROOT)], strict=True)
        cov.save()
    except NoDataError:
        pass
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "coverage.json"
        try:
            cov.json_report(outfile=str(out))
        except NoDataError:
            sys.exit("coverage_floors: no coverage data: run `pytest --cov` first (as `make test` does)")
        report = json.loads(out.read_text())
    files = {}
    for name, data in report["files"].items():
        path = Path(name)
        files[(path.relative_to(ROOT) if path.is_absolute() else path).as_posix()] = Tally.of(data["summary"])
    return files


def parse_floor(text: str) -> tuple[str, tuple[float, float]]:
    """``billing=95`` (lines, branches kept) or ``billing=95/90`` (lines/branches)."""
    package, _, figures = text.partition("=")
    if package not in PACKAGES or not figures:
        raise argparse.ArgumentTypeError(f"expected PACKAGE=LINES[/BRANCHES], PACKAGE one of {', '.join(PACKAGES)}")
    lines, _, branches = figures.partition("/")
    default_branches = FLOORS.get(package, (0.0, 0.0))[1]
    return package, (float(lines), float(branches) if branches else default_branches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.coverage_floors", description=__doc__.splitlines()[0])
    parser.add_argument("--floor", action="append", type=parse_floor, default=[], metavar="PACKAGE=LINES[/BRANCHES]")
    args = parser.parse_args(argv)
    floors = FLOORS | dict(args.floor)

    files = measured_files()
    tallies = {package: Tally() for package in PACKAGES}
    for path, figures in files.items():
        package = path.split("/", 1)[0]
        if package in tallies:
            tallies[package].add(figures)
    total = Tally()
    for tally in tallies.values():
        total.add(tally)

    print("\nCoverage per package (lines and branches; server and worker processes included)")
    header = f"{'package':<10} {'stmts':>6} {'miss':>5} {'lines':>7} {'branches':>9} {'miss':>5} {'branch':>7}  floor"
    print(header)
    print("-" * len(header))
    failures = []
    for package, tally in [*tallies.items(), ("TOTAL", total)]:
        floor = floors.get(package)
        verdict = ""
        if floor:
            under = [
                f"{what} {got:.2f} % < {wanted:g} %"
                for what, got, wanted in (("lines", tally.lines, floor[0]), ("branches", tally.branch, floor[1]))
                if got < wanted
            ]
            verdict = f"{floor[0]:g} / {floor[1]:g}" + ("  UNDER: " + ", ".join(under) if under else "  ok")
            if under:
                failures.append(f"{package}: " + ", ".join(under))
        print(
            f"{package:<10} {tally.statements:>6} {tally.missing:>5} {tally.lines:>6.1f}% "
            f"{tally.branches:>9} {tally.missing_branches:>5} {tally.branch:>6.1f}%  {verdict}"
        )

    floored = sorted(
        ((path, tally) for path, tally in files.items() if path.split("/", 1)[0] in floors),
        key=lambda item: (item[1].lines, item[0]),
    )
    print(f"\nLeast covered files in {', '.join(sorted(floors))} (by lines):")
    for path, tally in floored[:LEAST_COVERED]:
        print(
            f"  {path:<45} lines {tally.lines:5.1f} % ({tally.missing} missed)"
            f"  branches {tally.branch:5.1f} % ({tally.missing_branches} missed)"
        )

    if failures:
        print("\nCOVERAGE UNDER THE FLOOR:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("\nEvery package is at or above its floor.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
