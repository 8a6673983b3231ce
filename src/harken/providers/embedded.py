"""Load the embedded offline stack: one copy of each model per process, one compute lane.

Every model file is sha256-checked (``assemble.verify``) before it is loaded, so a missing or
corrupt model stops start-up with a clear :class:`~harken.errors.ModelError` instead of failing
mid-call. The composition root (:mod:`harken.providers.compose`) calls :func:`load_engines`
when ``providers = "embedded"``; it imports this module only then (it imports the runtimes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harken.config import ServerConfig
from harken.engines import assemble
from harken.engines.lane import shared_lane
from harken.errors import ModelError
from harken.providers.registry import Engines

log = logging.getLogger("harken.engines")

T = TypeVar("T")


def _timed(what: str, load: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        engine = load()
    except ModelError:
        raise
    except Exception as exc:  # a runtime that cannot load its model: say which one
        raise ModelError(f"{what} failed to load: {exc}") from exc
    log.info("loaded %s in %.2f s", what, time.perf_counter() - started)
    return engine


def load_engines(config: ServerConfig) -> Engines:
    """Verify and load the configured models (blocking: seconds)."""
    from harken.providers.llm.llama import LlamaLLM
    from harken.providers.stt.whisper import WhisperSTT
    from harken.providers.tts.espeak import EspeakTTS
    from harken.providers.tts.piper import PiperTTS
    from harken.providers.turn.smart_turn import SmartTurn
    from harken.providers.vad.silero import SileroVAD

    root = Path(config.model_dir) if config.model_dir else None
    threads = config.model_threads
    lane = shared_lane()

    def path(model_id: str) -> Path:
        return assemble.verify(model_id, root)

    stt_path, llm_path, tts_path = (
        path(config.stt_model),
        path(config.llm_model),
        path(config.tts_model),
    )
    vad_path = path("silero-vad")
    espeak_path = path(config.fallback_voice) if config.fallback_voice else None
    turn_path = path(config.turn_model) if config.turn_model else None
    engines = Engines(
        label=f"embedded ({config.stt_model}, {config.llm_model}, {config.tts_model})"
    )
    engines.vad = _timed("silero-vad", lambda: SileroVAD(vad_path))
    stt = _timed(config.stt_model, lambda: WhisperSTT(stt_path, lane, cpu_threads=threads))
    engines.stt["stt-default"] = stt
    other = config.stt_multilingual_model
    if other and other != config.stt_model and len(stt.capabilities.languages) == 1:
        # sessions that ask for another language are routed to this one (registry.stt)
        other_path = path(other)
        engines.stt["stt-multilingual"] = _timed(
            other, lambda: WhisperSTT(other_path, lane, cpu_threads=threads)
        )
    engines.llm["llm-default"] = _timed(
        config.llm_model, lambda: LlamaLLM(llm_path, lane, n_threads=threads)
    )
    engines.tts["tts-default"] = _timed(
        config.tts_model, lambda: PiperTTS(tts_path, lane, threads=threads)
    )
    if espeak_path is not None:
        engines.tts["tts-espeak"] = _timed("espeak-ng", lambda: EspeakTTS(espeak_path, lane=lane))
    if turn_path is not None:  # semantic end of turn (turn_detection, or a Flux session)
        engines.turn = _timed(
            config.turn_model, lambda: SmartTurn(turn_path, lane, threads=threads)
        )
    return engines
