"""The session's output queue and its registry of live provider jobs."""

from __future__ import annotations

from harken.protocol.messages import ServerMessage
from harken.session.effects import (
    CancelJob,
    CloseConnection,
    Effect,
    Job,
    ResumeJob,
    SendAudio,
    SendMessage,
    StartJob,
)


class Outbox:
    """Collects effects in order and hands out job ids.

    ``live`` holds the id of every job started and not yet done, failed or cancelled. The
    session drops provider output whose job id is not live: that is the one place where late
    output of a cancelled job disappears.
    """

    def __init__(self) -> None:
        self._effects: list[Effect] = []
        self._next_job = 1
        self.live: dict[int, str] = {}

    def send(self, message: ServerMessage) -> None:
        self._effects.append(SendMessage(message))

    def audio(self, data: bytes) -> None:
        self._effects.append(SendAudio(data))

    def new_id(self) -> int:
        """A fresh job id, for the job about to be passed to :meth:`start`."""
        job_id = self._next_job
        self._next_job += 1
        return job_id

    def start(self, job: Job) -> int:
        self.live[job.job_id] = job.kind
        self._effects.append(StartJob(job))
        return job.job_id

    def cancel(self, job_id: int | None) -> None:
        if job_id is not None and self.live.pop(job_id, None) is not None:
            self._effects.append(CancelJob(job_id))

    def resume(self, job_id: int | None) -> None:
        if job_id is not None and job_id in self.live:
            self._effects.append(ResumeJob(job_id))

    def cancel_all(self) -> None:
        for job_id in list(self.live):
            self.cancel(job_id)

    def done(self, job_id: int) -> None:
        self.live.pop(job_id, None)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._effects.append(CloseConnection(code, reason))

    def drain(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects
