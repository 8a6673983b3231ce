"""`harken serve` as a subprocess: SIGTERM/SIGINT end sessions with SERVER_GOING_AWAY, exit 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from conftest import EA, GA, ServerThread, closing_error, start_session, still_answers

pytestmark = pytest.mark.loopback


class Process:
    """A `harken serve --port 0 --providers testing` child; finds its port from the log."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARKEN_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harken", "serve", "--port", "0", "--providers", "testing"],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.port = 0
        found = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                match = re.search(r"listening on [\d.]+:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                if "providers ready" in line:
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30):
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def as_server(self) -> ServerThread:
        fake = ServerThread.__new__(ServerThread)
        fake.server = type("S", (), {"port": self.port})()  # type: ignore[assignment]
        return fake


@pytest.fixture
def child() -> Iterator[Process]:
    process = Process()
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sends_going_away_and_exits_0(child: Process, signum: int) -> None:
    server = child.as_server()
    ga, ea = start_session(server, GA), start_session(server, EA)
    still_answers(ga)
    started = time.monotonic()
    child.proc.send_signal(signum)
    for ws in (ga, ea):
        error, code = closing_error(ws)
        assert error["code"] == "SERVER_GOING_AWAY" and code == 1001
        assert (
            error["description"] == ("The server is shutting down; reconnect to another instance.")
            or "message" in error
        )  # EA carries message as well
    assert child.proc.wait(10) == 0
    assert time.monotonic() - started < 6
    log = "".join(child.lines)
    assert "Traceback" not in log and "draining" in log


def test_sigterm_drains_a_reply_and_a_second_signal_stops_at_once(child: Process) -> None:
    server = child.as_server()
    busy = start_session(server, GA)
    busy.send('{"type": "InjectUserMessage", "content": "[slow] a long story, please"}')
    time.sleep(0.3)  # the reply is under way (~0.5 s a word)
    child.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert child.proc.poll() is None  # still draining: the reply goes on
    started = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    error, code = closing_error(busy)
    assert error["code"] == "SERVER_GOING_AWAY" and code == 1001
    assert child.proc.wait(10) == 0
    assert time.monotonic() - started < 4


def test_what_start_up_made_is_frozen_out_of_the_collectors_sight(child: Process) -> None:
    """`harken serve` freezes the objects of start-up (gc.freeze), so a full collection under
    load scans only the sessions' objects; /metrics shows how many were frozen."""
    url = f"http://127.0.0.1:{child.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        metrics = response.read().decode()
    frozen = re.search(r"^harken_gc_frozen_objects (\S+)$", metrics, re.M)
    assert frozen is not None and float(frozen.group(1)) > 10_000, frozen
