"""Function calls in flight: every call ends exactly once (result, cancelled or timed out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harken.protocol.settings import FunctionDef, HistoryFunctionCall

Outcome = Literal["result", "cancelled", "timeout", "failed"]


@dataclass(slots=True)
class Call:
    id: str
    name: str
    arguments: str
    function: FunctionDef | None  # None: the LLM named a function that is not defined
    reply_id: int
    started: float
    job_id: int | None = None  # server-side calls run as a FunctionJob
    outcome: Outcome | None = None
    response: str = ""

    @property
    def client_side(self) -> bool:
        return self.function is None or self.function.client_side

    def history(self) -> HistoryFunctionCall:
        return HistoryFunctionCall(
            id=self.id,
            name=self.name,
            client_side=self.client_side,
            arguments=self.arguments,
            response=self.response,
        )


@dataclass(slots=True)
class CallTable:
    """Open calls by id. ``finish`` is the only way out, and it works once per call."""

    open: dict[str, Call] = field(default_factory=dict)

    def add(self, call: Call) -> None:
        self.open[call.id] = call

    def finish(self, call: Call, outcome: Outcome, response: str) -> None:
        """End an open call. It leaves the table, so nothing can end it a second time."""
        del self.open[call.id]
        call.outcome = outcome
        call.response = response

    def of_reply(self, reply_id: int) -> list[Call]:
        return [c for c in self.open.values() if c.reply_id == reply_id]

    def by_job(self, job_id: int) -> Call | None:
        return next((c for c in self.open.values() if c.job_id == job_id), None)

    def oldest_deadline(self, timeout: float) -> float | None:
        client = [c.started for c in self.open.values() if c.client_side and c.job_id is None]
        return min(client) + timeout if client else None
