"""Function rounds: the calls an LLM round asked for, each ending exactly once. Pure.

A round's calls are announced in one ``FunctionCallRequest``; server-side ones run as
``FunctionJob``s, client-side ones wait for the client's ``FunctionCallResponse`` (up to
``function_call_timeout``). When the last call of a round has ended (result, failure, timeout)
the reply thinks again with the results; a cancelled reply voids its open calls once, with
``FunctionCallCancelled``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from harken.protocol import codes
from harken.protocol import messages as m
from harken.protocol.settings import FunctionDef
from harken.session.effects import FunctionJob, FunctionResult, JobFailed, ProviderEvent, ToolCall
from harken.session.functions import Call, CallTable, Outcome
from harken.session.outbox import Outbox

if TYPE_CHECKING:
    from harken.session.replies import AgentState
    from harken.session.reply import Reply


class Rounds:
    def __init__(
        self,
        out: Outbox,
        agent: AgentState,
        history: Callable[[m.History], None],
        next_round: Callable[[Reply, float], None],
    ) -> None:
        self.out = out
        self.agent = agent
        self._history = history
        self._next_round = next_round
        self.calls = CallTable()
        self._replies: dict[int, Reply] = {}  # the reply of each open call's round

    def open_of(self, reply: Reply) -> list[Call]:
        return self.calls.of_reply(reply.reply_id)

    def call(self, reply: Reply, tool_calls: list[ToolCall], now: float) -> None:
        """Open the round's calls, announce the defined ones, start the server-side ones."""
        defined = {f.name: f for f in self.agent.functions}
        calls = [self._open(tc, reply, now, defined) for tc in tool_calls]
        requested = [
            m.FunctionCall(id=c.id, name=c.name, arguments=c.arguments, client_side=c.client_side)
            for c in calls
            if c.function is not None
        ]
        if requested:
            self.out.send(m.FunctionCallRequest(functions=tuple(requested)))
        for call in calls:
            if call.function is None:
                self._failed(call, f"the model called unknown function {call.name!r}", now)
            elif not call.client_side and call.id in self.calls.open:
                job = FunctionJob(self.out.new_id(), call.id, call.function, call.arguments)
                call.job_id = self.out.start(job)

    def _open(
        self, tc: ToolCall, reply: Reply, now: float, defined: dict[str, FunctionDef]
    ) -> Call:
        call = Call(tc.id, tc.name, tc.arguments, defined.get(tc.name), reply.reply_id, now)
        self.calls.add(call)
        self._replies[reply.reply_id] = reply
        reply.thought.calls.append(call)
        return call

    def answer(self, msg: m.FunctionCallResponse, now: float) -> None:
        """The client's FunctionCallResponse: the result of one of its open calls, or a Warning."""
        call = self.calls.open.get(msg.id)
        if call is None or not call.client_side or call.job_id is not None:
            self.out.send(
                m.Warning(
                    code=codes.UNKNOWN_FUNCTION_CALL_ID,
                    description=f"No client-side function call with id '{msg.id}' is waiting for "
                    "an answer; it may have been answered already, cancelled or timed out.",
                )
            )
            return
        self._finish(call, "result", msg.content, now)

    def on_job(self, event: ProviderEvent, now: float) -> None:
        call = self.calls.by_job(event.job_id)
        assert call is not None  # a live function job always has its open call
        self.out.done(event.job_id)
        if isinstance(event, FunctionResult):
            self._finish(call, "result", event.content, now)
        else:
            reason = event.message if isinstance(event, JobFailed) else "it returned no result"
            self._failed(call, reason, now)

    def cancel(self, reply: Reply) -> None:
        """The reply was cancelled: void its open calls, each once."""
        cancelled = []
        for call in self.open_of(reply):
            self.out.cancel(call.job_id)
            self.calls.finish(call, "cancelled", "")
            cancelled.append(m.CancelledFunction(id=call.id, name=call.name))
        self._replies.pop(reply.reply_id, None)
        if cancelled:
            self.out.send(m.FunctionCallCancelled(functions=tuple(cancelled)))

    def _failed(self, call: Call, message: str, now: float) -> None:
        self.out.send(
            m.Warning(
                code=codes.FUNCTION_CALL_FAILED, description=f"Function {call.name}: {message}"
            )
        )
        self._finish(call, "failed", json.dumps({"error": message}), now)

    def _finish(self, call: Call, outcome: Outcome, response: str, now: float) -> None:
        self.calls.finish(call, outcome, response)
        if not call.client_side:  # announced server-side calls end on the wire: result or error
            self.out.send(m.FunctionCallResponse(id=call.id, name=call.name, content=response))
        self._history(m.History(function_calls=(call.history(),)))
        if self.calls.of_reply(call.reply_id):
            return  # wait for the other calls of this round
        self._next_round(self._replies.pop(call.reply_id), now)

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        return self.calls.oldest_deadline(self.agent.function_call_timeout)

    def tick(self, now: float) -> None:
        timeout = self.agent.function_call_timeout
        for call in list(self.calls.open.values()):
            if call.client_side and call.job_id is None and now >= call.started + timeout:
                cancelled = m.CancelledFunction(id=call.id, name=call.name)
                self.out.send(m.FunctionCallCancelled(functions=(cancelled,)))
                self._failed(call, f"no FunctionCallResponse within {timeout:g} s", now)
