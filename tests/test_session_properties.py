"""The session survives random interleavings of everything that can happen to it (issue 10).

A short run of :class:`session_machine.SessionMachine`; ``benchmarks/session_fuzz.py`` runs it
for 10^5 steps and more (the count is in BENCHMARKS.md).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from session_machine import SessionMachine

TestSession = SessionMachine.TestCase
TestSession.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
