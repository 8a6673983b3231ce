"""Carriers' media-stream messages (issue 12): Twilio's and Telnyx's documented frames parse to
flat events, harken's replies come out in each carrier's spelling, and nothing a carrier (or an
impostor) sends raises anything but CarrierMessageError."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harken.protocol.carrier import (
    CarrierError,
    CarrierMessageError,
    Connected,
    Dtmf,
    Ignored,
    Mark,
    Media,
    Outbound,
    Start,
    Stop,
    parse,
)

PAYLOAD = base64.b64encode(bytes(range(0, 256, 16))).decode()

# Twilio's documented examples (Media Streams, WebSocket messages), ids shortened
TWILIO_START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC123",
        "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
        "callSid": "CA123",
        "tracks": ["inbound", "outbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"agent": "support", "token": "s3cret"},
    },
    "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0",
}
TELNYX_START = {
    "event": "start",
    "sequence_number": "1",
    "start": {
        "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
        "call_control_id": "v3:abc",
        "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
        "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        "custom_parameters": [{"name": "agent", "value": "sales"}, {"name": 3, "value": "x"}],
    },
    "stream_id": "32DE0DEA-53CB-4B21-89A4-9E1819C043BC",
}


def frame(data: dict[str, Any]) -> str:
    return json.dumps(data)


def test_twilio_messages() -> None:
    assert parse("twilio", frame({"event": "connected", "protocol": "Call"})) == Connected()
    start = parse("twilio", frame(TWILIO_START))
    assert start == Start(
        "MZ18ad3ab5a668481ce02b83e7395059f0",
        "CA123",
        "audio/x-mulaw",
        8000,
        {"agent": "support", "token": "s3cret"},
    )
    assert isinstance(start, Start) and start.mulaw_8k
    media = {"event": "media", "sequenceNumber": "3", "streamSid": "MZ1"}
    media["media"] = {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": PAYLOAD}
    assert parse("twilio", frame(media)) == Media(bytes(range(0, 256, 16)), "inbound")
    dtmf = {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "#"}}
    assert parse("twilio", frame(dtmf)) == Dtmf("#")
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "s1"}}
    assert parse("twilio", frame(mark)) == Mark("s1")
    stop = {"event": "stop", "streamSid": "MZ1", "stop": {"accountSid": "AC1", "callSid": "CA1"}}
    assert parse("twilio", frame(stop)) == Stop()


def test_telnyx_messages() -> None:
    start = parse("telnyx", frame(TELNYX_START))
    assert start == Start(
        "32DE0DEA-53CB-4B21-89A4-9E1819C043BC", "v3:abc", "PCMU", 8000, {"agent": "sales"}
    )
    assert isinstance(start, Start) and start.mulaw_8k
    error = {"event": "error", "payload": {"code": 100003, "title": "malformed_frame"}}
    assert parse("telnyx", frame(error)) == CarrierError(
        '{"code": 100003, "title": "malformed_frame"}'
    )
    media = {"event": "media", "stream_id": "S", "media": {"payload": PAYLOAD}}
    assert parse("telnyx", frame(media)) == Media(bytes(range(0, 256, 16)))


def test_start_defaults_and_odd_formats() -> None:
    bare = {"event": "start", "streamSid": "MZ1", "start": {}}
    assert parse("twilio", frame(bare)) == Start("MZ1", "", "audio/x-mulaw", 8000)
    wide = {"event": "start", "stream_id": "S", "start": {"media_format": {"encoding": "L16"}}}
    wide["start"]["media_format"]["sample_rate"] = "16000"
    parsed = parse("telnyx", frame(wide))
    assert isinstance(parsed, Start) and parsed.sample_rate == 16000 and not parsed.mulaw_8k
    odd = {"event": "start", "streamSid": "MZ1", "start": {"mediaFormat": {"encoding": 7}}}
    odd["start"]["customParameters"] = "agent=support"
    assert parse("twilio", frame(odd)) == Start("MZ1", "", "", 8000)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"event": 3}', "no event"),
        ('{"event": "start", "start": {}}', "no stream id"),
        ('{"event": "start", "streamSid": "M", "start": 1}', "no start object"),
        (
            '{"event": "start", "streamSid": "M", "start": {"mediaFormat": {"sampleRate": "x"}}}',
            "sample rate",
        ),
        ('{"event": "media", "media": {}}', "no payload"),
        ('{"event": "media", "media": {"payload": "&&&"}}', "not base64"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "not a key"),
        ('{"event": "mark", "mark": {}}', "no name"),
    ],
)
def test_malformed_frames_are_refused(text: str, words: str) -> None:
    with pytest.raises(CarrierMessageError, match=words):
        parse("twilio", text)


def test_unknown_events_are_ignored() -> None:
    assert parse("twilio", '{"event": "transcription"}') == Ignored("transcription")
    media = {"event": "media", "media": {"payload": PAYLOAD, "track": 5}}
    assert parse("twilio", frame(media)) == Media(bytes(range(0, 256, 16)), "inbound")


def test_outbound_frames_in_each_carriers_spelling() -> None:
    twilio, telnyx = Outbound("twilio", "MZ1"), Outbound("telnyx", "S1")
    assert json.loads(twilio.media(b"\xff\x7f")) == {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"payload": "/38="},
    }
    assert json.loads(twilio.mark("s3")) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "s3"},
    }
    assert json.loads(twilio.clear()) == {"event": "clear", "streamSid": "MZ1"}
    assert json.loads(telnyx.media(b"\xff\x7f")) == {"event": "media", "media": {"payload": "/38="}}
    assert json.loads(telnyx.mark("s3")) == {"event": "mark", "mark": {"name": "s3"}}
    assert json.loads(telnyx.clear()) == {"event": "clear"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "error", "x"])


@settings(max_examples=300, derandomize=True)
@given(
    carrier=st.sampled_from(["twilio", "telnyx"]),
    event=events,
    body=st.dictionaries(
        st.sampled_from(["start", "media", "dtmf", "mark", "streamSid", "stream_id", "payload"]),
        json_values,
        max_size=4,
    ),
)
def test_any_frame_parses_or_is_refused_cleanly(
    carrier: Any, event: str, body: dict[str, Any]
) -> None:
    with contextlib.suppress(CarrierMessageError):
        parse(carrier, json.dumps({"event": event, **body}))
