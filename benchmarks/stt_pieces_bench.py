"""Long turns through Whisper in pieces: the longest lane step and the word errors by piece length.

Three turns made of the test recordings (``scripts/fetch_testdata.py``), transcribed by
:class:`~harken.providers.stt.WhisperSTT` (``whisper-base`` by default, int8, as the server loads
it) with the longest piece set to each of ``--pieces`` seconds in turn:

* A: the first six recordings (five LibriVox sentences, "go forward ten meters") with 0.6 s
  pauses, 31 s;
* B: all eleven recordings back to back, no pauses, 37 s;
* C: all eleven in reverse order with 0.2 s pauses, 39 s.

Each piece is an encoder step and a decoder step on the compute lane; for each turn and piece
length this prints the number of pieces, the longest encoder step, the longest decoder step, the
whole transcription's time and the word error rate. Numbers only; nothing is asserted. Run from
the repository root (``PYTHONPATH=src`` if harken is not installed)::

    python benchmarks/stt_pieces_bench.py [--pieces 6,7,8,10] [--model whisper-base]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harken.engines.lane import ComputeLane  # noqa: E402
from harken.providers.base import Int16Array  # noqa: E402
from harken.providers.stt import WhisperSTT, whisper  # noqa: E402
from speech import model_root, utterances, wer  # noqa: E402


def turns() -> dict[str, tuple[Int16Array, str]]:
    speech = utterances()

    def join(parts: list[Any], pause_s: float) -> tuple[Int16Array, str]:
        pause = np.zeros(round(16000 * pause_s), np.int16)
        audio = np.concatenate([x for u in parts for x in (u.samples, pause)])
        return audio, " ".join(u.text for u in parts)

    return {"A": join(speech[:6], 0.6), "B": join(speech, 0.0), "C": join(speech[::-1], 0.2)}


def timing(stt: WhisperSTT, name: str, into: list[float]) -> None:
    """Record how long each call of ``stt.<name>`` (one lane step) takes."""
    step: Callable[..., Any] = getattr(stt, name)

    @wraps(step)
    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return step(*args)
        finally:
            into.append(time.perf_counter() - started)

    setattr(stt, name, timed)


async def run(model: str, piece_lengths: list[float]) -> None:
    lane = ComputeLane("stt-pieces-bench")
    stt = WhisperSTT.from_catalog(model, lane, model_root())
    encoder: list[float] = []
    decoder: list[float] = []
    timing(stt, "_encode", encoder)
    timing(stt, "_decode", decoder)
    cases = turns()
    await stt.transcribe(cases["A"][0][: 16000 * 3])  # warm-up
    print(f"{model}: longest piece, turn, pieces, longest encoder / decoder step, total, WER")
    for seconds in piece_lengths:
        whisper.PIECE_S = seconds  # type: ignore[misc]  # the module's constant, for this run
        for name, (audio, reference) in cases.items():
            encoder.clear()
            decoder.clear()
            refits = stt.refits
            started = time.perf_counter()
            text = await stt.transcribe(audio)
            total = time.perf_counter() - started
            print(
                f"{seconds:4.1f} s  {name} {audio.size / 16000:4.1f} s  {len(encoder):2d} pieces"
                f" ({stt.refits - refits} again)  encoder {max(encoder):.3f} s"
                f"  decoder {max(decoder):.3f} s  total {total:.2f} s"
                f"  WER {wer(reference, text):5.1%}",
                flush=True,
            )
    lane.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pieces", default="6,7,8,10", help="longest piece lengths, seconds")
    parser.add_argument("--model", default="whisper-base")
    args = parser.parse_args()
    asyncio.run(run(args.model, [float(s) for s in args.pieces.split(",")]))


if __name__ == "__main__":
    main()
