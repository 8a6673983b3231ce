"""Numbers and tables for benchmarks/scaleout.py and its sections."""

from __future__ import annotations

from collections.abc import Sequence


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def print_problems(problems: Sequence[str], limit: int = 5) -> None:
    print(f"  replica log problems (tracebacks, ERROR lines): {len(problems)}")
    for line in problems[:limit]:
        print(f"    {line}")
    if len(problems) > limit:
        print(f"    ... and {len(problems) - limit} more")
