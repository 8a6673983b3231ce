"""The demo page at ``/``, end to end in headless Debian Chromium driven by Playwright.

Chromium is ``/usr/bin/chromium`` (``scripts/install_chromium.sh`` installs it; no browser is
ever downloaded). Its fake capture device plays a WAV of recorded speech as the microphone
(``--use-file-for-fake-audio-capture=FILE%noloop``), padded with silence at both ends.

The page exposes ``window.harken``: ``state``, ``scheduledSeconds`` (agent audio scheduled on
the AudioContext), ``sentSeconds``, ``flushes``, ``messages`` (server message types seen) and
``errors`` (banner texts).

The fast tests use the testing providers (energy VAD, an STT that says how much it heard, an
echoing LLM, a beeping TTS); ``test_conversation_with_the_embedded_models`` uses the real stack.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import speech
from conftest import ServerThread
from harken.protocol.audio import pcm16_to_bytes, resample, wav_header

pytestmark = pytest.mark.loopback

CHROMIUM = Path("/usr/bin/chromium")
FAKE_RATE = 48000
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
]

Page = Any  # playwright.sync_api.Page (playwright is imported lazily, see browser())


# ----------------------------------------------------------------------------- helpers


def fake_mic_wav(path: Path, samples16k: np.ndarray[Any, Any], before: float, after: float) -> Path:
    """``samples16k`` as 16-bit mono at 48 kHz, with ``before``/``after`` seconds of silence."""
    loud = resample(samples16k.astype(np.int16), speech.RATE, FAKE_RATE)
    pcm = np.concatenate(
        [
            np.zeros(int(before * FAKE_RATE), np.int16),
            loud,
            np.zeros(int(after * FAKE_RATE), np.int16),
        ]
    )
    path.write_bytes(wav_header(FAKE_RATE, "linear16", 1, pcm.size * 2) + pcm16_to_bytes(pcm))
    return path


@contextlib.contextmanager
def browser(
    tmp_path: Path, wav: Path | None = None, *, allow_mic: bool = True
) -> Iterator[tuple[Any, list[str]]]:
    """A fresh headless Chromium profile; yields (context, console/page errors)."""
    try:
        sync_api = importlib.import_module("playwright.sync_api")
    except ImportError:
        speech.missing("playwright is not installed: .venv/bin/pip install playwright")
    if not CHROMIUM.is_file():
        speech.missing(f"{CHROMIUM} is missing: run scripts/install_chromium.sh")
    args = list(FLAGS)
    if allow_mic:
        args.append("--use-fake-ui-for-media-stream")  # grant the microphone without asking
    else:
        args.append("--deny-permission-prompts")
    if wav is None:  # silence: Chromium's default fake microphone beeps
        wav = fake_mic_wav(tmp_path / "silence.wav", np.zeros(0, np.int16), 0.0, 1.0)
    args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
    profile = tmp_path / "chromium-profile"
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            yield context, problems
        finally:
            context.close()


def open_page(context: Any, problems: list[str], server: ServerThread) -> Page:
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.goto(server.http("/"))
    page.wait_for_function("window.harken !== undefined")
    return page


def stats(page: Page) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate("JSON.parse(JSON.stringify(window.harken))")
    return value


def lines(page: Page, role: str) -> list[str]:
    found: list[str] = page.eval_on_selector_all(
        f'#transcript [data-role="{role}"] .text', "els => els.map(e => e.textContent)"
    )
    return found


def banner(page: Page) -> str:
    if page.is_hidden("#banner"):
        return ""
    text: str = page.inner_text("#banner-text")
    return text


def wait_for(page: Page, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"timed out waiting for {what}; page state: {stats(page)}")


def http_get(server: ServerThread, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the files


def test_page_and_its_files_are_served_with_their_types(server: ServerThread) -> None:
    status, kind, body = http_get(server, "/")
    assert status == 200 and kind == "text/html; charset=utf-8"
    assert b'id="start"' in body and b"/static/app.js" in body
    for path, expected, marker in (
        ("/static/app.js", "text/javascript; charset=utf-8", b"InjectUserMessage"),
        ("/static/worklet.js", "text/javascript; charset=utf-8", b"registerProcessor"),
        ("/static/style.css", "text/css; charset=utf-8", b".transcript"),
        ("/index.html", "text/html; charset=utf-8", b"<!doctype html>"),
    ):
        status, kind, body = http_get(server, path)
        assert (status, kind) == (200, expected), path
        assert marker in body, path
    for path in ("/static/../http.py", "/static/", "/static/nope.js", "/static/%2e%2e/http.py"):
        assert http_get(server, path)[0] == 404, path


# ----------------------------------------------------------------------------- testing providers


def test_conversation_with_the_testing_providers(server: ServerThread, tmp_path: Path) -> None:
    wav = fake_mic_wav(tmp_path / "mic.wav", speech.goforward().samples, before=1.0, after=3.0)
    with browser(tmp_path, wav) as (context, problems):
        page = open_page(context, problems, server)
        page.click("#start")
        wait_for(page, lambda: "AgentAudioDone" in stats(page)["messages"], 30, "a reply")
        heard = lines(page, "user")
        assert heard and heard[0].startswith("I heard"), heard
        assert lines(page, "assistant")[0].startswith("You said:")
        assert page.locator('#transcript [data-role="assistant"] .badge').count() == 1
        s = stats(page)
        assert s["scheduledSeconds"] > 0.2 and s["sentSeconds"] > 3.0, s
        assert "UserStartedSpeaking" in s["messages"] and s["flushes"] >= 1
        assert banner(page) == "" and not problems, problems
        page.click("#stop")
        wait_for(page, lambda: stats(page)["state"] == "idle", 5, "the page to stop")
        assert page.is_enabled("#start")


def test_typed_message_and_a_client_side_function(server: ServerThread, tmp_path: Path) -> None:
    with browser(tmp_path) as (context, problems):
        page = open_page(context, problems, server)
        page.check("#clock")
        page.click("#start")
        wait_for(page, lambda: stats(page)["state"] == "listening", 10, "SettingsApplied")
        page.fill("#message", "please call get_time")
        page.click("#send")
        wait_for(page, lambda: "AgentAudioDone" in stats(page)["messages"], 15, "a reply")
        calls = page.eval_on_selector_all(
            "#transcript .line.call .text", "els => els.map(e => e.textContent)"
        )
        assert calls and calls[0].startswith("get_time() → {"), calls
        assert lines(page, "user") == ["please call get_time"]
        assert lines(page, "assistant")[0].startswith("The function returned:")
        assert not problems, problems


def test_prompt_and_voice_changes_apply_mid_conversation(
    server: ServerThread, tmp_path: Path
) -> None:
    with browser(tmp_path) as (context, problems):
        page = open_page(context, problems, server)
        page.click("#start")
        wait_for(page, lambda: stats(page)["state"] == "listening", 10, "SettingsApplied")
        page.fill("#prompt", "You are terse.")
        page.dispatch_event("#prompt", "change")
        page.select_option("#voice", "harken/espeak")  # not loaded by the testing providers
        wait_for(page, lambda: "Warning" in stats(page)["messages"], 10, "the Warning")
        notes = page.eval_on_selector_all(
            "#transcript .line.note .text", "els => els.map(e => e.textContent)"
        )
        assert notes[0] == "Prompt updated." and "tts-espeak" in notes[1], notes
        page.select_option("#voice", "deepgram/aura-2-thalia-en")
        wait_for(page, lambda: "SpeakUpdated" in stats(page)["messages"], 10, "SpeakUpdated")
        assert not problems, problems
    # the settings are remembered by the browser profile
    with browser(tmp_path) as (context, problems):
        page = open_page(context, problems, server)
        assert page.input_value("#prompt") == "You are terse."
        assert page.input_value("#voice") == "deepgram/aura-2-thalia-en"


def test_denied_microphone_says_so(server: ServerThread, tmp_path: Path) -> None:
    with browser(tmp_path, allow_mic=False) as (context, problems):
        page = open_page(context, problems, server)
        page.click("#start")
        wait_for(page, lambda: banner(page) != "", 10, "the banner")
        assert "Microphone access was denied" in banner(page)
        assert page.is_enabled("#start") and "WebSocket" not in str(problems)
        assert server.session_count() == 0


def test_server_error_is_shown(server: ServerThread, tmp_path: Path) -> None:
    with browser(tmp_path) as (context, problems):
        page = open_page(context, problems, server)
        page.evaluate(
            """() => {
                const voice = document.getElementById("voice");
                voice.add(new Option("nobody", "nowhere/nobody"));
                voice.value = "nowhere/nobody";
            }"""
        )
        page.click("#start")
        wait_for(page, lambda: banner(page) != "", 10, "the banner")
        assert "The agent reported an error" in banner(page)
        assert "INVALID_SETTINGS" in banner(page)
        wait_for(page, lambda: page.is_enabled("#start"), 10, "the page to stop")


def test_lost_connection_is_shown(make_server: Callable[..., ServerThread], tmp_path: Path) -> None:
    running = make_server()
    with browser(tmp_path) as (context, problems):
        page = open_page(context, problems, running)
        page.click("#start")
        wait_for(page, lambda: stats(page)["state"] == "listening", 10, "SettingsApplied")

        async def cut() -> None:  # drop every connection without a close frame
            assert running.server._server is not None
            for connection in list(running.server._server.connections):
                connection.transport.abort()

        running.call(cut())
        wait_for(page, lambda: banner(page) != "", 10, "the banner")
        assert "connection to the agent was lost" in banner(page)
        assert page.is_enabled("#start")


def test_api_key_travels_as_the_token_subprotocol(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    running = make_server(api_keys=["page-key"])
    with browser(tmp_path) as (context, problems):
        page = open_page(context, problems, running)
        page.click("#start")
        wait_for(page, lambda: banner(page) != "", 10, "the banner")
        assert "Could not connect to the agent" in banner(page)
        assert "API key" in banner(page)
        page.fill("#apikey", "page-key")
        page.click("#start")
        wait_for(page, lambda: stats(page)["state"] == "listening", 10, "SettingsApplied")
        assert page.is_hidden("#banner")


# ----------------------------------------------------------------------------- the real models


@pytest.mark.models
@pytest.mark.timeout(300)
def test_conversation_with_the_embedded_models(embedded: ServerThread, tmp_path: Path) -> None:
    said = speech.need(speech.goforward)
    wav = fake_mic_wav(tmp_path / "mic.wav", said.samples, before=1.0, after=3.0)
    with browser(tmp_path, wav) as (context, problems):
        page = open_page(context, problems, embedded)
        page.click("#start")
        wait_for(page, lambda: bool(lines(page, "user")), 60, "the user's words")
        heard = speech.normalise(" ".join(lines(page, "user")))
        reference = speech.normalise(said.text)
        assert len(set(heard) & set(reference)) >= 3, (heard, reference)
        wait_for(page, lambda: stats(page)["scheduledSeconds"] > 0.5, 180, "agent audio")
        wait_for(page, lambda: "AgentAudioDone" in stats(page)["messages"], 60, "the reply's end")
        answer = " ".join(lines(page, "assistant"))
        assert answer.strip(), stats(page)
        s = stats(page)
        assert "AgentStartedSpeaking" in s["messages"] and "LatencyReport" in s["messages"]
        assert page.locator('#transcript [data-role="assistant"] .badge').count() >= 1
        assert banner(page) == "" and not problems, problems
        print(json.dumps({"heard": lines(page, "user"), "answer": answer, "stats": s}))
