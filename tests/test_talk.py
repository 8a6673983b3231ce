"""``harken talk``: a WAV file, a text or the microphone against a real server on loopback.

The fast tests use the testing providers (the STT says how much sound it heard, the LLM
echoes, the TTS beeps); the ``models`` tests use the embedded stack and recorded speech.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import speech
from conftest import ServerThread
from harken import cli, talk
from harken.protocol.audio import pcm16_to_bytes, read_wav, resample, wav_header

pytestmark = pytest.mark.loopback


def write_wav(path: Path, samples16k: np.ndarray[Any, Any], rate: int, channels: int) -> Path:
    """``samples16k`` at ``rate`` with ``channels`` identical channels, 0.5 s silence each side."""
    pad = np.zeros(speech.RATE // 2, np.int16)
    mono = resample(np.concatenate([pad, samples16k.astype(np.int16), pad]), speech.RATE, rate)
    frames = np.repeat(mono[:, None], channels, axis=1)
    path.write_bytes(
        wav_header(rate, "linear16", channels, frames.size * 2) + pcm16_to_bytes(frames)
    )
    return path


def run(*args: str) -> tuple[int, str, str]:
    """``harken talk ARGS`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    parsed = cli.build_parser().parse_args(["talk", *args])
    return talk.run(parsed, out=out, err=err), out.getvalue(), err.getvalue()


def said(out: str, label: str) -> list[str]:
    """The texts of the ``label:`` lines."""
    prefix = f"{label}:"
    return [line[len(prefix) :].strip() for line in out.splitlines() if line.startswith(prefix)]


def reply_seconds(path: Path) -> float:
    wav = read_wav(path.read_bytes())
    assert (wav.sample_rate, wav.channels) == (talk.OUT_RATE, 1)
    return float(wav.samples.shape[0]) / wav.sample_rate


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# ----------------------------------------------------------------------------- testing providers


def test_text_mode(server: ServerThread, tmp_path: Path) -> None:
    out_wav = tmp_path / "reply.wav"
    status, out, err = run("--text", "hello there", "--url", server.url(), "--out", str(out_wav))
    assert status == 0, err
    assert said(out, "you") == ["hello there"]
    assert said(out, "agent") == ['You said: "hello there".']
    assert re.search(r"s (after|before) your audio ended$", said(out, "latency")[0])
    assert said(out, "audio") == [f"wrote {out_wav} ({reply_seconds(out_wav):.1f} s at 24000 Hz)"]
    assert reply_seconds(out_wav) > 0.1


def test_a_stereo_44k_file_is_streamed_in_real_time(server: ServerThread, tmp_path: Path) -> None:
    utterance = speech.need(speech.goforward)
    wav = write_wav(tmp_path / "say.wav", utterance.samples, 44100, 2)
    out_wav = tmp_path / "reply.wav"
    status, out, err = run(str(wav), "--url", server.url(), "--out", str(out_wav))
    assert status == 0, err
    heard = said(out, "you")
    assert len(heard) == 1 and heard[0].startswith("I heard "), out
    assert said(out, "agent")[0].startswith("You said:")
    assert said(out, "latency") and reply_seconds(out_wav) > 0.1


def test_greeting_comes_first_and_no_out_writes_nothing(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(
        "--text", "hi", "--greeting", "Welcome!", "--url", server.url(), "--out", ""
    )
    assert status == 0, err
    assert said(out, "agent") == ["Welcome!", 'You said: "hi".']
    assert said(out, "audio") == [] and list(tmp_path.iterdir()) == []


def test_text_mode_keeps_a_slow_session_alive(
    make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = make_server(idle_timeout=1.0)  # the [slow] reply takes about 2 s
    monkeypatch.setattr(talk, "KEEPALIVE_SECONDS", 0.3)
    status, out, err = run("--text", "[slow] hi", "--url", running.url(), "--out", "")
    assert status == 0, err
    assert said(out, "agent") == ['You said: "[slow] hi".']


def test_server_errors_are_reported(server: ServerThread) -> None:
    status, _, err = run("--text", "hi", "--url", server.url(), "--voice", "nowhere/nobody")
    assert status == 1
    assert err.startswith("harken talk: ") and "INVALID_SETTINGS" in err


def test_failed_reply_is_reported(server: ServerThread) -> None:
    status, out, err = run("--text", "[fail]", "--url", server.url(), "--out", "")
    assert status == 1 and said(out, "you") == ["[fail]"]
    assert "FAILED_TO_THINK" in err


def test_no_server_is_reported(unused_port: int) -> None:
    status, _, err = run("--text", "hi", "--url", f"ws://127.0.0.1:{unused_port}", "--out", "")
    assert status == 1 and "could not connect" in err.lower()


def test_api_key(make_server: Callable[..., ServerThread]) -> None:
    running = make_server(api_keys=["talk-key"])
    status, _, err = run("--text", "hi", "--url", running.url(), "--out", "")
    assert status == 1 and "Authentication failed" in err
    status, out, err = run(
        "--text", "hi", "--url", running.url(), "--out", "", "--api-key", "talk-key"
    )
    assert status == 0 and said(out, "agent"), err


def test_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "not.wav").write_text("hello")
    cases = {
        (): "give a WAV file",
        ("a.wav", "--text", "hi"): "not both",
        (str(tmp_path / "missing.wav"),): "cannot read",
        (str(tmp_path / "not.wav"),): "not a WAV file",
        ("a.wav", "--timeout", "0"): "--timeout must be positive",
    }
    for args, message in cases.items():
        status, _, err = run(*args)
        assert status == 2 and message in err, (args, err)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(wav_header(16000, "linear16", 1, 0))
    status, _, err = run(str(empty))
    assert status == 2 and "holds no audio" in err


def test_mic_without_sounddevice_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_module() -> Any:
        raise ImportError("No module named 'sounddevice'")

    monkeypatch.setattr(talk, "load_sounddevice", no_module)
    status, _, err = run("--mic")
    assert status == 2
    assert "--mic needs the sounddevice package" in err and "harken talk FILE.wav" in err


def test_mic_without_portaudio_or_microphone_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_portaudio() -> Any:
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(talk, "load_sounddevice", no_portaudio)
    status, _, err = run("--mic")
    assert status == 2 and "no sound system" in err and "libportaudio2" in err

    def query_devices(kind: str | None = None) -> Any:
        raise ValueError("No input device matching ''")

    fake = types.SimpleNamespace(query_devices=query_devices)
    monkeypatch.setattr(talk, "load_sounddevice", lambda: fake)
    status, _, err = run("--mic")
    assert status == 2 and "no microphone found" in err


def test_mic_streams_and_plays_through_sounddevice(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in sounddevice: its input stream plays a recording, its output collects audio."""
    utterance = speech.need(speech.goforward)
    pad = np.zeros(speech.RATE, np.int16)
    recording = pcm16_to_bytes(np.concatenate([pad, utterance.samples, pad, pad]))

    class InputStream:
        def __init__(self, callback: Callable[..., None], blocksize: int, **_: Any) -> None:
            self.callback, self.block = callback, blocksize * 2

        def __enter__(self) -> InputStream:
            threading.Thread(target=self._feed, daemon=True).start()
            return self

        def _feed(self) -> None:
            for i in range(0, len(recording), self.block):
                self.callback(recording[i : i + self.block], self.block // 2, None, None)
                time.sleep(0.02)
            talk_done.append(True)

        def __exit__(self, *exc: object) -> None:
            return None

    class OutputStream:
        def __init__(self, callback: Callable[..., None], **_: Any) -> None:
            self.callback = callback

        def start(self) -> None:
            buffer = bytearray(960)
            self.callback(memoryview(buffer), 480, None, None)

        def stop(self) -> None:
            return None

        def close(self) -> None:
            return None

    talk_done: list[bool] = []
    fake = types.SimpleNamespace(
        query_devices=lambda kind=None: {"name": kind},
        RawInputStream=InputStream,
        RawOutputStream=OutputStream,
    )
    monkeypatch.setattr(talk, "load_sounddevice", lambda: fake)
    original_wait = talk.Conversation.wait

    def wait(self: talk.Conversation, done: Any, until: float, tick: Any) -> bool:
        # the real loop runs until Ctrl-C: stop once the agent has answered
        return original_wait(self, lambda: self.replied() and bool(talk_done), until, tick)

    monkeypatch.setattr(talk.Conversation, "wait", wait)
    out_wav = tmp_path / "mic.wav"
    status, out, err = run("--mic", "--url", server.url(), "--out", str(out_wav))
    assert status == 0, err
    assert said(out, "you")[0].startswith("I heard") and said(out, "agent")
    assert "listening: speak now" in err and said(out, "latency")
    assert reply_seconds(out_wav) > 0.1


def test_the_command_line_entry_point(server: ServerThread, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harken", "talk", "--text", "hi", "--url", server.url()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'agent:   You said: "hi".' in result.stdout
    assert reply_seconds(tmp_path / "reply.wav") > 0


# ----------------------------------------------------------------------------- the real models


@pytest.mark.models
@pytest.mark.timeout(300)
def test_recorded_utterance_with_the_models(embedded: ServerThread, tmp_path: Path) -> None:
    utterance = speech.need(speech.goforward)
    wav = write_wav(tmp_path / "say.wav", utterance.samples, 48000, 2)
    out_wav = tmp_path / "reply.wav"
    status, out, err = run(str(wav), "--url", embedded.url(), "--out", str(out_wav))
    assert status == 0, err
    heard = speech.normalise(" ".join(said(out, "you")))
    assert len(set(heard) & set(speech.normalise(utterance.text))) >= 3, out
    assert " ".join(said(out, "agent")).strip(), out
    assert said(out, "latency")[0].startswith(tuple("0123456789")), out
    assert reply_seconds(out_wav) > 0.5
    print(out)


@pytest.mark.models
@pytest.mark.timeout(300)
def test_text_with_the_models(embedded: ServerThread, tmp_path: Path) -> None:
    out_wav = tmp_path / "reply.wav"
    question = "What is the capital of France?"
    status, out, err = run("--text", question, "--url", embedded.url(), "--out", str(out_wav))
    assert status == 0, err
    assert said(out, "you") == [question]
    assert "paris" in " ".join(said(out, "agent")).lower(), out
    assert said(out, "latency") and reply_seconds(out_wav) > 0.5
    print(out)
