"""Runs the session's provider jobs and reports their output as provider events.

One :meth:`Runner.run` call per ``StartJob`` effect, inside the connection's task group; the pump
cancels the task on ``CancelJob``. ``run`` never raises (except ``CancelledError``): provider
failures become ``JobFailed`` with the provider's ``retryable`` flag, and unexpected exceptions
are logged with their traceback and reported as a non-retryable ``JobFailed``.

===============  ==========================================================================
job              events emitted
===============  ==========================================================================
TranscribeJob    ``Transcript``, then ``JobDone``
ThinkJob         ``TextDelta``\\* / ``ToolCalls``, then ``JobDone``
SpeakJob         ``AudioChunk``\\* (20-40 ms frames, output rate and encoding), then ``JobDone``
PrimeJob         ``JobDone``
FunctionJob      ``FunctionResult``
===============  ==========================================================================

Think and speak carry fallback lists: when a config fails *before producing any output* with a
retryable error, the next config is tried and the client hears a ``JobWarning``
(``THINK_REQUEST_FAILED`` / ``SPEAK_REQUEST_FAILED``) saying so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

import httpx
import numpy as np

from harken.engines.lane import BOOST
from harken.errors import ContextTooLong, ProviderError
from harken.protocol import audio
from harken.protocol.codes import PROMPT_TOO_LONG, SPEAK_REQUEST_FAILED, THINK_REQUEST_FAILED
from harken.protocol.settings import AudioOutput, Provider, SpeakConfig, ThinkConfig
from harken.providers.base import SPECULATIVE, Int16Array, LLMEndScore, LLMText
from harken.providers.registry import Registry
from harken.server.functions import call_function
from harken.session.effects import (
    AudioChunk,
    FunctionJob,
    FunctionResult,
    Job,
    JobDone,
    JobFailed,
    JobWarning,
    PrimeJob,
    ProviderEvent,
    SpeakJob,
    TextDelta,
    TextScore,
    ThinkJob,
    ToolCalls,
    TranscribeJob,
    Transcript,
    TurnJob,
    TurnScore,
)
from harken.session.reply import split_sentences

log = logging.getLogger("harken.runner")
_UNSCORED: set[str] = set()  # think providers already logged as unable to score


def _no_end_score(llm: object) -> None:
    """Log once per provider class that its sessions' turns end on the acoustic signal alone."""
    name = type(llm).__name__
    if name not in _UNSCORED:
        _UNSCORED.add(name)
        log.warning(
            "think provider %s cannot score the end of the user's message (end_score); with "
            "semantic turn detection its sessions' turns end on the acoustic signal alone",
            name,
        )


Emit = Callable[[ProviderEvent], Awaitable[None]]
C = TypeVar("C", ThinkConfig, SpeakConfig)
FRAME_MS = 40
FALLBACK_VOICE = "tts-espeak"  # the engine name the embedded stack gives espeak-ng


class Runner:
    """Executes jobs with the registry's providers. One per server; stateless per job."""

    def __init__(
        self,
        registry: Registry,
        *,
        allow_loopback_functions: bool = False,
        function_timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.registry = registry
        self.allow_loopback_functions = allow_loopback_functions
        self.function_timeout = function_timeout
        self._http = http
        self._own_http = http is None
        self._forgetting: set[asyncio.Task[None]] = set()

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._http

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def forget(self, session: str) -> None:
        """A session ended: let every LLM that keeps per-session state (KV snapshots) drop it,
        in the background (it queues on the model lane; the closing connection need not wait)."""
        for llm in self.registry.engines.llm.values():
            forget = getattr(llm, "forget", None)
            if forget is not None:
                task = asyncio.create_task(self._forget(forget, session))
                self._forgetting.add(task)
                task.add_done_callback(self._forgetting.discard)

    async def _forget(self, forget: Callable[[str], Awaitable[None]], session: str) -> None:
        try:
            await forget(session)
        except Exception:  # freeing memory must never disturb anything else
            log.exception("could not drop the cache of session %s", session)

    async def run(
        self,
        job: Job,
        emit: Emit,
        *,
        gate: asyncio.Event | None = None,
        starving: Callable[[], bool] | None = None,
    ) -> None:
        """Run ``job`` to completion, reporting through ``emit``. Never raises (but cancels).

        ``gate`` (a held reply's ``ThinkJob``): once its first sentence is out, the LLM is not
        asked for more until the gate is set (the turn is final): a guess that may be void
        leaves the compute lane to other sessions' committed replies.
        ``starving`` (a ``ThinkJob``): while it says True (the audio the listener has will run
        out soon), this LLM's steps go before other sessions' (:data:`~harken.engines.lane.BOOST`).
        """
        if starving is not None:
            BOOST.set(starving)  # this job's own task: no other job sees it
        if gate is not None:
            SPECULATIVE.set(gate)  # a guess until the gate opens: it yields model-server slots
        try:
            await self._dispatch(job, emit, gate)
        except ProviderError as exc:
            log.info("%s job %d failed: %s", job.kind, job.job_id, exc)
            await emit(JobFailed(job.job_id, str(exc), exc.retryable))
        except Exception:
            log.exception("%s job %d crashed", job.kind, job.job_id)
            await emit(JobFailed(job.job_id, f"internal error in the {job.kind} provider"))

    async def _dispatch(self, job: Job, emit: Emit, gate: asyncio.Event | None) -> None:
        if isinstance(job, TranscribeJob):
            await self._transcribe(job, emit)
        elif isinstance(job, ThinkJob):
            think = partial(self._think, job, gate=gate)
            await self._fallbacks(job, job.think, emit, think)
        elif isinstance(job, SpeakJob):
            speak = (*job.speak, *self._fallback_voice(job.speak))
            await self._fallbacks(job, speak, emit, lambda c, e: self._speak(job, c, e))
        elif isinstance(job, PrimeJob):
            await self._prime(job, emit)
        elif isinstance(job, TurnJob):
            await self._turn(job, emit)
        else:
            await self._function(job, emit)

    async def _fallbacks(
        self,
        job: ThinkJob | SpeakJob,
        configs: Sequence[C],
        emit: Emit,
        attempt: Callable[[C, Emit], Awaitable[None]],
    ) -> None:
        if not configs:
            raise ProviderError("no provider is configured for this job")
        produced = False

        async def tracked(event: ProviderEvent) -> None:
            nonlocal produced
            produced = True
            await emit(event)

        for index, config in enumerate(configs):
            try:
                await attempt(config, tracked)
            except ProviderError as exc:
                if produced or not exc.retryable or index == len(configs) - 1:
                    await emit(JobFailed(job.job_id, str(exc), exc.retryable))
                    return
                log.warning("%s job %d: provider %d failed: %s", job.kind, job.job_id, index, exc)
                code = THINK_REQUEST_FAILED if job.kind == "think" else SPEAK_REQUEST_FAILED
                description = (
                    f"The {job.kind} provider {index + 1} failed ({exc}); "
                    f"falling back to provider {index + 2}."
                )
                await emit(JobWarning(job.job_id, code, description))
                continue
            await emit(JobDone(job.job_id))
            return

    def _fallback_voice(self, speak: Sequence[SpeakConfig]) -> tuple[SpeakConfig, ...]:
        """The server's fallback voice (espeak-ng) as a last resort, when it is loaded."""
        if FALLBACK_VOICE not in self.registry.engines.tts:
            return ()
        if any(self.registry.route("speak", c.provider) == FALLBACK_VOICE for c in speak):
            return ()
        return (SpeakConfig(provider=Provider(type="harken", model="espeak")),)

    async def _think(
        self, job: ThinkJob, config: ThinkConfig, emit: Emit, *, gate: asyncio.Event | None = None
    ) -> None:
        llm = self.registry.llm(config)
        temperature = config.provider.options.get("temperature")
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            temperature = None
        scored = job.end_score and llm.capabilities.end_score
        if job.end_score and not scored:
            _no_end_score(llm)
            await emit(TextScore(job.job_id, None))
        extra = {"end_score": True} if scored else {}  # only providers that offer it take it
        stream = llm.stream(job.messages, job.functions, temperature=temperature, **extra)
        said = ""  # while gated: the text so far, to see the first sentence end
        async for output in stream:
            if isinstance(output, LLMText):
                if output.text:
                    await emit(TextDelta(job.job_id, output.text))
                if gate is not None and not gate.is_set():
                    said += output.text
                    if split_sentences(said)[0]:
                        await gate.wait()  # the stream is not pulled: the LLM pauses
            elif isinstance(output, LLMEndScore):
                await emit(TextScore(job.job_id, output.probability))
            else:
                await emit(ToolCalls(job.job_id, output.calls))

    async def _speak(self, job: SpeakJob, config: SpeakConfig, emit: Emit) -> None:
        tts = self.registry.tts(config)
        frames = _Framer(job.output)
        source = tts.synthesize(job.text)
        async for data in _resampled(source, tts.capabilities.sample_rate, job.output.sample_rate):
            for frame in frames.push(audio.encode_output(data, job.output.encoding)):
                await emit(AudioChunk(job.job_id, frame))
        tail = frames.flush()
        if tail:
            await emit(AudioChunk(job.job_id, tail))

    async def _transcribe(self, job: TranscribeJob, emit: Emit) -> None:
        stt = self.registry.stt(job.listen)
        options = job.listen.provider.options if job.listen else {}
        language = options.get("language")
        terms = options.get("keyterms")
        keyterms = [t for t in terms if isinstance(t, str)] if isinstance(terms, list) else []
        pcm = np.frombuffer(job.pcm16k, dtype=np.int16)
        text = await stt.transcribe(
            pcm, language=language if isinstance(language, str) else None, keyterms=keyterms
        )
        await emit(Transcript(job.job_id, text.strip()))
        await emit(JobDone(job.job_id))

    async def _turn(self, job: TurnJob, emit: Emit) -> None:
        detector = self.registry.engines.turn
        if detector is None:
            raise ProviderError("no end-of-turn model is loaded (turn_model)")
        pcm = np.frombuffer(job.pcm16k, dtype=np.int16)
        await emit(TurnScore(job.job_id, await detector.probability(pcm)))
        await emit(JobDone(job.job_id))

    async def _prime(self, job: PrimeJob, emit: Emit) -> None:
        if job.think:
            config = job.think[0]  # the system prompt and the tool list, so turn 1 is warm
            try:
                await self.registry.llm(config).prime(job.messages, config.functions)
            except ContextTooLong as exc:  # told now, not only as each turn's Error
                await emit(JobWarning(job.job_id, PROMPT_TOO_LONG, str(exc)))
        await emit(JobDone(job.job_id))

    async def _function(self, job: FunctionJob, emit: Emit) -> None:
        content = await call_function(
            self.http,
            job.function,
            job.arguments,
            allow_loopback=self.allow_loopback_functions,
            timeout=self.function_timeout,
        )
        await emit(FunctionResult(job.job_id, content))


async def _resampled(
    source: AsyncIterator[Int16Array], from_rate: int, to_rate: int
) -> AsyncIterator[Int16Array]:
    """Stream-resample int16 chunks, keeping filter state (no clicks at chunk boundaries)."""
    resampler = audio.StreamResampler(from_rate, to_rate, np.int16)
    async for chunk in source:
        out = resampler.process(chunk)
        if len(out):
            yield out
    out = resampler.flush()
    if len(out):
        yield out


class _Framer:
    """Cuts an encoded byte stream into ``FRAME_MS`` frames, sample-aligned."""

    def __init__(self, output: AudioOutput) -> None:
        self.size = max(1, audio.frame_bytes(output.encoding, output.sample_rate, FRAME_MS))
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        count = len(self._buffer) // self.size
        frames = [bytes(self._buffer[i * self.size : (i + 1) * self.size]) for i in range(count)]
        del self._buffer[: count * self.size]
        return frames

    def flush(self) -> bytes:
        tail = bytes(self._buffer)
        self._buffer.clear()
        return tail
