"""Fail unless src/harken/protocol and src/harken/session have 100% line and branch coverage.

Run after `pytest --cov=harken --cov-branch` (``make test`` does); reads the .coverage file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import coverage

PURE = ("harken/protocol/", "harken/session/")


def main() -> int:
    cov = coverage.Coverage()
    cov.load()
    data = cov.get_data()
    short: list[str] = []
    measured = {str(Path(p).resolve()) for p in data.measured_files()}
    src = Path(__file__).resolve().parent.parent / "src" / "harken"
    for folder in ("protocol", "session"):
        for file in sorted((src / folder).glob("*.py")):
            if str(file) not in measured and file.stat().st_size > 0:
                short.append(f"{file}: never imported by the tests")
    for path in sorted(data.measured_files()):
        if not any(p in path for p in PURE):
            continue
        analysis = cov._analyze(path)
        numbers = analysis.numbers
        if numbers.n_missing or numbers.n_partial_branches:
            missing = analysis.missing_formatted(branches=True)
            short.append(f"{path}: missing {missing}")
    if short:
        print("protocol/ and session/ must stay at 100% branch coverage:")
        print("\n".join(short))
        return 1
    print("protocol/ and session/: 100% line and branch coverage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
