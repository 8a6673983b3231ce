"""The long run of the session state machine (issue 10): at least 10^5 random steps.

Runs ``tests/session_machine.py`` (every client message valid and malformed, audio, VAD frames,
provider output, failures, late output of cancelled jobs, clock ticks) through hypothesis for
``--examples`` runs of up to ``--steps`` steps each, and prints how many steps ran, which
session states were reached and how long it took. A failure prints hypothesis's shortest
reproduction and exits non-zero.

    .venv/bin/python benchmarks/session_fuzz.py [--examples 2500] [--steps 60] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harken.session.state import State
from session_machine import SessionMachine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2500)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    config = settings(
        max_examples=args.examples,
        stateful_step_count=args.steps,
        deadline=None,
        database=None,
        derandomize=args.seed is None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    machine = SessionMachine
    if args.seed is not None:
        from hypothesis import seed

        machine = seed(args.seed)(SessionMachine)  # type: ignore[assignment]
    started = time.perf_counter()
    try:
        run_state_machine_as_test(machine, settings=config)
    finally:
        elapsed = time.perf_counter() - started
        missing = sorted(s.value for s in State if s.value not in SessionMachine.states_seen)
        print(f"examples: {args.examples} x up to {args.steps} steps")
        print(f"steps run: {SessionMachine.steps_run}")
        print(f"states reached: {len(SessionMachine.states_seen)}/{len(State)}; never: {missing}")
        print(f"time: {elapsed:.1f} s ({SessionMachine.steps_run / elapsed:,.0f} steps/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
