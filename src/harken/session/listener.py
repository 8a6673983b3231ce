"""End of turn from voice activity, in audio time: a pure state machine over VAD frames.

The pump turns the client's audio into 16 kHz mono PCM and runs the VAD on 32 ms frames; the
session feeds each frame's speech probability and samples here. Durations are counted in
frames, so the listener needs no clock and behaves the same in tests and in production.

* onset: ``onset_frames`` consecutive frames above ``on`` (noise and clicks are shorter);
* pause: the first ``pause_frames`` below ``off`` after speech (speculation may start);
* resume: speech again before the end of turn (speculation is void);
* end of turn: ``eot_frames`` below ``off``; the utterance (with ``preroll_frames`` before the
  onset) goes to speech-to-text; or earlier, at :meth:`Listener.complete`, when an end-of-turn
  model judges the paused turn complete (then ``eot_frames`` is the timeout);
* an utterance longer than ``max_frames`` ends the turn at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

FRAME_SAMPLES = 512  # 32 ms at 16 kHz
FRAME_SECONDS = FRAME_SAMPLES / 16000


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    on: float = 0.5
    off: float = 0.35
    onset_frames: int = 3  # 96 ms of speech before UserStartedSpeaking
    pause_frames: int = 4  # 128 ms: a short pause, where speculation starts
    eot_frames: int = 17  # 544 ms of silence ends the turn
    preroll_frames: int = 10  # 320 ms kept before the onset
    max_frames: int = 940  # 30 s


@dataclass(frozen=True, slots=True)
class ListenEvent:
    kind: Literal["onset", "pause", "resume", "end"]
    pcm: bytes = b""  # "pause" and "end": the utterance so far (int16 LE, 16 kHz)
    frame: int = 0  # index of the frame that triggered the event
    silence: float = 0.0  # "end": seconds of silence it waited for (0 for an over-long turn)


@dataclass(slots=True)
class Listener:
    config: ListenerConfig = field(default_factory=ListenerConfig)
    frames_seen: int = 0
    _preroll: deque[bytes] = field(default_factory=deque)
    _utterance: list[bytes] = field(default_factory=list)
    _loud: int = 0  # consecutive frames above `on`
    _quiet: int = 0  # consecutive frames below `off` inside an utterance
    _speaking: bool = False
    _paused: bool = False

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def silent_frames(self) -> int:
        """Frames below ``off`` in a row inside the utterance (0 outside one)."""
        return self._quiet if self._speaking else 0

    @property
    def paused(self) -> bool:
        """Silent since a pause inside the user's turn (what :meth:`complete` would end)."""
        return self._speaking and self._paused and self._quiet > 0

    def feed(self, probability: float, frame: bytes) -> ListenEvent | None:
        """One 32 ms frame; returns what it meant, if anything."""
        self.frames_seen += 1
        if not self._speaking:
            return self._idle(probability, frame)
        self._utterance.append(frame)
        if probability >= self.config.off:
            self._quiet = 0
            if self._paused and probability >= self.config.on:
                self._paused = False
                return ListenEvent("resume", frame=self.frames_seen)
            return self._too_long()
        self._quiet += 1
        if self._quiet >= self.config.eot_frames:
            return self._end()
        if self._quiet == self.config.pause_frames and not self._paused:
            self._paused = True
            return ListenEvent("pause", pcm=self.pcm(), frame=self.frames_seen)
        return self._too_long()

    def pcm(self) -> bytes:
        return b"".join(self._utterance)

    def complete(self) -> ListenEvent | None:
        """The end-of-turn model judged the turn complete: end it now, if it is still paused
        (silent since the pause). Otherwise nothing: the user went on, or it already ended."""
        if not self.paused:
            return None
        return self._end()

    def reset(self) -> None:
        """Forget the utterance in progress (e.g. the session closed)."""
        self._speaking = self._paused = False
        self._utterance = []
        self._loud = self._quiet = 0

    def _idle(self, probability: float, frame: bytes) -> ListenEvent | None:
        self._preroll.append(frame)
        if len(self._preroll) > self.config.preroll_frames + self.config.onset_frames:
            self._preroll.popleft()
        self._loud = self._loud + 1 if probability >= self.config.on else 0
        if self._loud < self.config.onset_frames:
            return None
        self._speaking = True
        self._utterance = list(self._preroll)
        self._preroll.clear()
        self._quiet = 0
        return ListenEvent("onset", frame=self.frames_seen)

    def _too_long(self) -> ListenEvent | None:
        if len(self._utterance) >= self.config.max_frames:
            return self._end()
        return None

    def _end(self) -> ListenEvent:
        pcm, silence = self.pcm(), self._quiet * FRAME_SECONDS
        self.reset()
        return ListenEvent("end", pcm=pcm, frame=self.frames_seen, silence=silence)
