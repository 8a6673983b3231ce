"""Real OpenAI-compatible model servers on loopback, started by the tests as subprocesses.

* ``llama-server`` (llama.cpp's own server, built by ``make llama-server`` from the vendored
  llama.cpp of the pinned llama-cpp-python sdist) serving an installed GGUF, with ``--jinja`` so
  tool calls come back as OpenAI ``tool_calls``;
* ``faster-whisper-server`` (PyPI) serving the installed Whisper model;
* ``tests/speech_server.py``: Piper behind OpenAI's ``/v1/audio/speech`` shape.

A server that does not come up within its budget fails the test with its own log tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LLAMA_SERVER = Path(
    os.environ.get("HARKEN_LLAMA_SERVER", ROOT / "build" / "llama.cpp" / "llama-server")
)
MODELS = Path(os.environ.get("HARKEN_MODEL_DIR", ROOT / "models"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Running:
    name: str
    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def count(self, text: str) -> int:
        """How often ``text`` occurs in the server's log (its request log lines, say)."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace").count(text)
        return 0

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def running(name: str, argv: list[str], port: int, health: str, budget: float) -> Iterator[Running]:
    with tempfile.NamedTemporaryFile(prefix=f"harken-{name}-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    out = log.open("wb")
    process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Running(name, f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_healthy(server, health, budget)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        out.close()
        log.unlink(missing_ok=True)


def _wait_healthy(server: Running, health: str, budget: float) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited ({server.process.returncode}):\n{server.tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url(health), timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} did not become healthy in {budget:g} s:\n{server.tail()}")


def llama_server(
    model: str = "qwen2.5-coder-0.5b", *, slots: int = 2, threads: int = 2
) -> contextlib.AbstractContextManager[Running]:
    """llama.cpp's server on a free port, serving an installed GGUF (one slot per session)."""
    if not LLAMA_SERVER.exists():
        raise RuntimeError(f"{LLAMA_SERVER} is missing: run `make llama-server`")
    port = free_port()
    argv = [
        str(LLAMA_SERVER),
        "--model", str(MODELS / model / "model.gguf"),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--threads", str(threads),
        "--ctx-size", str(4096 * slots),
        "--parallel", str(slots),
        "--jinja",
        "--no-webui",
    ]  # fmt: skip
    return running("llama-server", argv, port, "/health", budget=60)


def whisper_server(model: str = "whisper-base") -> contextlib.AbstractContextManager[Running]:
    """faster-whisper-server on a free port, serving an installed CTranslate2 Whisper model."""
    port = free_port()
    argv = [sys.executable, "-m", "faster_whisper_server", str(MODELS / model)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return running("faster-whisper-server", argv, port, "/health", budget=60)


def speech_server(
    voice: str = "piper-joe/en_US-joe-medium.onnx",
) -> contextlib.AbstractContextManager[Running]:
    """The suite's OpenAI-shaped Piper speech server on a free port."""
    port = free_port()
    script = str(Path(__file__).with_name("speech_server.py"))
    argv = [sys.executable, script, "--voice", str(MODELS / voice), "--port", str(port)]
    return running("speech-server", argv, port, "/health", budget=60)
