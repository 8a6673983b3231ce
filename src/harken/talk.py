"""``harken talk``: one conversation with a voice agent from the shell, through harken's own SDK.

* ``harken talk FILE.wav`` streams a WAV (any rate, mono or stereo; downmixed and resampled to
  16 kHz linear16) in real time, then silence until the agent has answered; it prints the user
  transcript, the agent's reply and the latency, and writes the reply audio (``--out``,
  default ``reply.wav``).
* ``harken talk --text "question"`` sends the question as ``InjectUserMessage`` instead (and
  ``KeepAlive`` every 5 s while it waits).
* ``harken talk --mic`` talks through the microphone (needs PortAudio and ``sounddevice``) until
  Ctrl-C, playing the agent through the speakers when there are any; it says clearly when there
  is no sound device.

The server is ``--url`` (default ``$HARKEN_URL``, else ``ws://127.0.0.1:8765``); a key comes
from ``--api-key`` or ``$HARKEN_API_KEY``/``$DEEPGRAM_API_KEY``. Any server speaking the Voice
Agent API works, not just harken. Exit status: 0 after a reply, 1 when the agent failed
(error, lost connection, no reply in time), 2 for a usage problem (bad file, no microphone).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from harken.client import (
    Agent,
    AgentWebSocketClient,
    AgentWebSocketEvents,
    Audio,
    DeepgramClient,
    InjectUserMessageOptions,
    Input,
    Listen,
    Output,
    Provider,
    SettingsOptions,
    Speak,
    Think,
)
from harken.protocol.audio import WavError, pcm16_to_bytes, read_wav, resample, to_mono, wav_header

IN_RATE: Final = 16000
OUT_RATE: Final = 24000
CHUNK_SECONDS: Final = 0.02
CHUNK_BYTES: Final = int(IN_RATE * CHUNK_SECONDS) * 2
SILENCE: Final = bytes(CHUNK_BYTES)
KEEPALIVE_SECONDS = 5.0  # text mode sends no audio, so it sends a KeepAlive this often
DEFAULT_PROMPT: Final = (
    "You are a friendly voice assistant. Answer in one or two short spoken sentences, "
    "without lists or markdown."
)
DEFAULT_VOICE: Final = "aura-2-thalia-en"
E = AgentWebSocketEvents


class TalkError(Exception):
    """A problem with what the user asked for (exit status 2)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    talk = commands.add_parser(
        "talk",
        help="talk to a voice agent from a WAV file, a text or the microphone",
        description="Talk to a voice agent (harken or any Voice Agent API server): stream a WAV "
        "file in real time, send a text, or use the microphone; print what was said and the "
        "latency, and write the agent's audio.",
    )
    talk.add_argument("file", nargs="?", metavar="FILE.wav", help="a WAV file of what you say")
    source = talk.add_mutually_exclusive_group()
    source.add_argument("--text", help="send this text as the user's message instead of audio")
    source.add_argument("--mic", action="store_true", help="talk through the microphone")
    talk.add_argument(
        "--url", help="agent URL (default $HARKEN_URL, else ws://127.0.0.1:8765/v1/agent/converse)"
    )
    talk.add_argument("--api-key", help="API key (default $HARKEN_API_KEY or $DEEPGRAM_API_KEY)")
    talk.add_argument(
        "--out",
        default="reply.wav",
        metavar="FILE.wav",
        help="where to write the agent's audio (default reply.wav; '' writes nothing)",
    )
    talk.add_argument("--prompt", default=DEFAULT_PROMPT, help="the agent's system prompt")
    talk.add_argument(
        "--voice",
        default=DEFAULT_VOICE,
        help="speak model: 'aura-2-thalia-en' (Piper on harken), or TYPE/MODEL such as "
        "'harken/espeak'",
    )
    talk.add_argument("--greeting", help="have the agent say this first")
    talk.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the reply once you have finished (default 90)",
    )


# ----------------------------------------------------------------------------- settings


def speak_provider(voice: str) -> Provider:
    """``aura-2-thalia-en`` → deepgram; ``harken/espeak`` → type harken, model espeak."""
    kind, _, model = voice.rpartition("/")
    return Provider(type=kind or "deepgram", model=model)


def settings(prompt: str, voice: str, greeting: str | None) -> SettingsOptions:
    return SettingsOptions(
        experimental=True,  # LatencyReport too
        audio=Audio(
            input=Input(encoding="linear16", sample_rate=IN_RATE),
            output=Output(encoding="linear16", sample_rate=OUT_RATE, container="none"),
        ),
        agent=Agent(
            listen=Listen(provider=Provider(type="deepgram", model="nova-3")),
            think=Think(provider=Provider(type="open_ai", model="gpt-4o-mini"), prompt=prompt),
            speak=Speak(provider=speak_provider(voice)),
            greeting=greeting or None,
        ),
    )


def load_speech(path: str) -> bytes:
    """A WAV file as 16 kHz mono linear16 bytes."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TalkError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        wav = read_wav(data)
    except WavError as exc:
        raise TalkError(f"{path} is not a WAV file harken can read: {exc}") from None
    samples = resample(to_mono(wav.samples), wav.sample_rate, IN_RATE)
    if samples.size == 0:
        raise TalkError(f"{path} holds no audio")
    return pcm16_to_bytes(samples)


def write_wav(path: str, pcm: bytes, rate: int = OUT_RATE) -> None:
    Path(path).write_bytes(wav_header(rate, "linear16", 1, len(pcm)) + pcm)


# ----------------------------------------------------------------------------- the conversation


@dataclass
class Conversation:
    """What the agent said, collected from the SDK's listener thread."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    on_audio: Callable[[bytes], None] | None = None
    on_barge_in: Callable[[], None] | None = None
    user: list[str] = field(default_factory=list)
    agent: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    replies: int = 0  # AgentAudioDone since the last user turn
    first_audio_at: float | None = None
    latency: str = ""
    failure: str = ""
    live: bool = False  # print each latency as it comes (microphone mode)
    finished: bool = False  # we are closing: a Close is not a failure
    ready: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def attach(self, conn: AgentWebSocketClient) -> None:
        handlers: dict[E, Callable[..., None]] = {
            E.SettingsApplied: self._settings_applied,
            E.ConversationText: self._text,
            E.UserStartedSpeaking: self._user_started,
            E.FunctionCallRequest: self._function_call,
            E.AgentStartedSpeaking: self._started_speaking,
            E.AudioData: self._audio,
            E.AgentAudioDone: self._audio_done,
            E.Warning: self._warning,
            E.Error: self._error,
            E.Close: self._close,
        }
        for event, handler in handlers.items():
            conn.on(event, handler)

    def say(self, label: str, text: str) -> None:
        """One aligned line: ``label:  text``."""
        print(f"{label + ':':<9}{text}", file=self.out, flush=True)

    def _update(self, **changes: Any) -> None:
        with self.changed:
            for name, value in changes.items():
                setattr(self, name, value)
            self.changed.notify_all()

    def _settings_applied(self, _conn: object, settings_applied: object, **_: Any) -> None:
        self.ready.set()

    def _text(self, _conn: object, conversation_text: Any, **_: Any) -> None:
        role, content = conversation_text.role, conversation_text.content
        self.say("you" if role == "user" else "agent", content)
        with self.changed:
            if role == "user":
                self.user.append(content)
                self.replies = 0
                self.audio.clear()
                self.first_audio_at = None
            else:
                self.agent.append(content)
            self.changed.notify_all()

    def _user_started(self, _conn: object, user_started_speaking: object, **_: Any) -> None:
        if self.on_barge_in is not None:
            self.on_barge_in()

    def _function_call(self, _conn: object, function_call_request: Any, **_: Any) -> None:
        for call in function_call_request.functions:
            side = "client" if call.client_side else "server"
            self.say("call", f"{call.name}({call.arguments}) [{side}-side]")

    def _started_speaking(self, _conn: object, agent_started_speaking: Any, **_: Any) -> None:
        s = agent_started_speaking
        self.latency = (
            f"{s.total_latency:.2f} s to first audio "
            f"(thinking {s.ttt_latency:.2f} s, speech {s.tts_latency:.2f} s)"
        )
        if self.live:
            self.say("latency", self.latency)

    def _audio(self, _conn: object, data: bytes, **_: Any) -> None:
        with self.changed:
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
            self.audio.extend(data)
        if self.on_audio is not None:
            self.on_audio(data)

    def _audio_done(self, _conn: object, agent_audio_done: object, **_: Any) -> None:
        with self.changed:
            self.replies += 1
            self.changed.notify_all()

    def _warning(self, _conn: object, warning: Any, **_: Any) -> None:
        print(f"warning: {warning.description} ({warning.code})", file=self.err, flush=True)

    def _error(self, _conn: object, error: Any, **_: Any) -> None:
        code = getattr(error, "code", "") or getattr(error, "type", "")
        self._update(failure=f"{error.description or error.message} ({code})")

    def _close(self, _conn: object, close: object, **_: Any) -> None:
        with self.changed:
            if not self.failure and not self.finished:
                self.failure = "the server closed the connection"
            self.changed.notify_all()

    def wait(self, done: Callable[[], bool], until: float, tick: Callable[[], None]) -> bool:
        """Call ``tick`` every 20 ms until ``done()`` (True), a failure or ``until`` (False)."""
        while True:
            with self.changed:
                if done():
                    return True
                if self.failure or time.monotonic() >= until:
                    return False
            tick()

    def replied(self) -> bool:
        return bool(self.user) and self.replies > 0


class Pacer:
    """Sends 20 ms chunks at real time: ``send`` blocks until each chunk is due."""

    def __init__(self, conn: AgentWebSocketClient) -> None:
        self.conn = conn
        self.start = time.monotonic()
        self.sent = 0

    def send(self, chunk: bytes) -> None:
        self.conn.send_audio(chunk)
        self.sent += 1
        delay = self.start + self.sent * CHUNK_SECONDS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # fell far behind (a stall): do not burst to catch up
            self.start, self.sent = time.monotonic(), 0


# ----------------------------------------------------------------------------- running


def connect(args: argparse.Namespace, talk: Conversation) -> AgentWebSocketClient:
    client = DeepgramClient(api_key=args.api_key or None, url=args.url or None)
    conn = client.agent.websocket.v("1")
    talk.attach(conn)
    options = settings(args.prompt, args.voice, args.greeting)
    if not conn.start(options):
        raise ConnectionError(talk.failure or f"could not connect to {conn.url}")
    return conn


def summary(talk: Conversation, finished_at: float | None) -> None:
    if talk.latency:
        heard = ""
        if finished_at is not None and talk.first_audio_at is not None:
            gap = talk.first_audio_at - finished_at
            # a file's trailing silence counts as yours: the answer can start before it ends
            when = f"{gap:.2f} s after" if gap >= 0 else f"{-gap:.2f} s before"
            heard = f"; heard {when} your audio ended"
        talk.say("latency", f"{talk.latency}{heard}")


def save(talk: Conversation, out: str) -> None:
    if not out:
        return
    with talk.changed:
        pcm = bytes(talk.audio)
    write_wav(out, pcm)
    talk.say("audio", f"wrote {out} ({len(pcm) / 2 / OUT_RATE:.1f} s at {OUT_RATE} Hz)")


def one_turn(args: argparse.Namespace, talk: Conversation) -> int:
    speech = load_speech(args.file) if args.text is None else b""
    conn = connect(args, talk)
    pacer = Pacer(conn)

    def silence() -> None:
        pacer.send(SILENCE)

    last_keepalive = time.monotonic()

    def idle() -> None:  # text mode sends no audio: keep the session alive instead
        nonlocal last_keepalive
        time.sleep(CHUNK_SECONDS)
        if time.monotonic() - last_keepalive >= KEEPALIVE_SECONDS:
            conn.keep_alive()
            last_keepalive = time.monotonic()

    tick = idle if args.text is not None else silence
    try:
        deadline = time.monotonic() + 15.0
        if not talk.wait(talk.ready.is_set, deadline, tick):
            return fail(talk, "no SettingsApplied from the server")
        if args.greeting:
            greeted = talk.wait(lambda: talk.replies > 0, time.monotonic() + args.timeout, tick)
            if not greeted:
                return fail(talk, "the greeting never finished")
        if args.text is not None:
            conn.inject_user_message(InjectUserMessageOptions(content=args.text))
        else:
            for i in range(0, len(speech), CHUNK_BYTES):
                if talk.failure:
                    break
                pacer.send(speech[i : i + CHUNK_BYTES])
        finished = time.monotonic()
        if not talk.wait(talk.replied, finished + args.timeout, tick):
            if talk.failure:
                return fail(talk, "")
            if not talk.user:
                return fail(talk, f"no transcript within {args.timeout:g} s: heard no words")
            return fail(talk, f"no complete reply within {args.timeout:g} s")
        summary(talk, finished)
        save(talk, args.out)
        return 0
    finally:
        talk.finished = True
        conn.finish()


def fail(talk: Conversation, what: str) -> int:
    reason = "; ".join(part for part in (what, talk.failure) if part)
    print(f"harken talk: {reason}", file=talk.err, flush=True)
    return 1


def load_sounddevice() -> Any:
    """Import ``sounddevice`` (optional: PortAudio bindings; not a dependency of harken)."""
    return importlib.import_module("sounddevice")


def sound_device() -> Any:
    """The ``sounddevice`` module, or TalkError saying why the microphone cannot be used."""
    try:
        sd = load_sounddevice()
    except ImportError:
        raise TalkError(
            "--mic needs the sounddevice package and PortAudio "
            "(pip install sounddevice; apt-get install libportaudio2); "
            "without them, talk from a file: harken talk FILE.wav"
        ) from None
    except OSError as exc:  # sounddevice imports, but PortAudio is missing
        raise TalkError(
            f"--mic: no sound system ({exc}); install PortAudio (apt-get install libportaudio2) "
            "or talk from a file: harken talk FILE.wav"
        ) from None
    try:
        sd.query_devices(kind="input")
    except Exception:
        raise TalkError(
            "--mic: no microphone found (this machine has no sound input device); "
            "talk from a file instead: harken talk FILE.wav"
        ) from None
    return sd


class Speaker:
    """Plays agent audio through the default output device; ``flush`` drops what is queued."""

    def __init__(self, sd: Any) -> None:
        self._lock = threading.Lock()
        self._queue = bytearray()
        self._stream = sd.RawOutputStream(
            samplerate=OUT_RATE, channels=1, dtype="int16", callback=self._callback
        )
        self._stream.start()

    def _callback(self, outdata: Any, frames: int, _time: Any, _status: Any) -> None:
        want = frames * 2
        with self._lock:
            chunk = bytes(self._queue[:want])
            del self._queue[:want]
        outdata[:] = chunk + bytes(want - len(chunk))

    def play(self, pcm: bytes) -> None:
        with self._lock:
            self._queue.extend(pcm)

    def flush(self) -> None:
        with self._lock:
            self._queue.clear()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


def microphone(args: argparse.Namespace, talk: Conversation) -> int:
    sd = sound_device()
    speaker: Speaker | None = None
    try:
        sd.query_devices(kind="output")
        speaker = Speaker(sd)
    except Exception:
        print("no speakers found: the agent's audio is only written to --out", file=talk.err)
    everything = bytearray()

    def heard(pcm: bytes) -> None:
        everything.extend(pcm)
        if speaker is not None:
            speaker.play(pcm)

    talk.on_audio, talk.live = heard, True
    talk.on_barge_in = speaker.flush if speaker is not None else None
    try:
        conn = connect(args, talk)

        def captured(indata: Any, _frames: int, _time: Any, _status: Any) -> None:
            if talk.ready.is_set():
                conn.send_audio(bytes(indata))

        try:
            stream = sd.RawInputStream(
                samplerate=IN_RATE,
                channels=1,
                dtype="int16",
                blocksize=CHUNK_BYTES // 2,
                callback=captured,
            )
            print("listening: speak now (Ctrl-C to stop)", file=talk.err, flush=True)
            with stream, contextlib.suppress(KeyboardInterrupt):
                talk.wait(lambda: False, float("inf"), lambda: time.sleep(0.1))
        finally:
            talk.finished = True
            conn.finish()
    finally:
        if speaker is not None:
            speaker.close()
    talk.audio[:] = everything
    save(talk, args.out)
    if talk.failure:
        return fail(talk, "")
    return 0


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    talk = Conversation(out=out or sys.stdout, err=err or sys.stderr)
    if not args.mic and args.text is None and not args.file:
        print('harken talk: give a WAV file, --text "..." or --mic', file=talk.err)
        return 2
    if args.file and (args.mic or args.text is not None):
        print("harken talk: give a WAV file or --text/--mic, not both", file=talk.err)
        return 2
    if args.timeout <= 0:
        print("harken talk: --timeout must be positive", file=talk.err)
        return 2
    try:
        return microphone(args, talk) if args.mic else one_turn(args, talk)
    except TalkError as exc:
        print(f"harken talk: {exc}", file=talk.err, flush=True)
        return 2
    except ConnectionError as exc:
        print(f"harken talk: {exc}", file=talk.err, flush=True)
        return 1
