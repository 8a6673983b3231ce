"""Twilio's voice webhook (issue 12, part 3): ``POST /twilio/voice`` answers a call with TwiML
that connects it to the media stream, and checks ``X-Twilio-Signature``. Requests are signed
with Twilio's own ``RequestValidator`` (the ``twilio`` package), so a pass here means the
server's check is Twilio's algorithm, not a copy of our own. The POST's body reaches the route
through :class:`harken.server.post_body.BodyReader`, in front of websockets' HTTP parser; the
last tests check it byte by byte and that WebSocket handshakes are untouched.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]
from websockets.sync.client import connect

from conftest import ServerThread, harken_config, serving
from harken.config import load_config
from harken.errors import ConfigError
from harken.server import post_body, twilio_voice
from harken.server.post_body import BodyReader
from phone_client import CarrierClient

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]

TOKEN = "12345678901234567890123456789012"
PROFILES: dict[str, Any] = {
    "default": {"agent": {"greeting": "Hello caller."}},
    "secure": {"token": "s3cret&<\"'>", "agent": {"greeting": "This is the secure line."}},
}
CALL = {
    "CallSid": "CA1234567890abcdef1234567890abcdef",
    "AccountSid": "AC1234567890abcdef1234567890abcdef",
    "From": "+15551230000",
    "To": "+15559870000",
    "CallStatus": "ringing",
    "Direction": "inbound",
    "ForwardedFrom": "",
}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def signed() -> Iterator[ServerThread]:
    with serving(harken_config(phone_profiles=PROFILES, twilio_auth_token=TOKEN)) as running:
        yield running


@pytest.fixture(scope="module")
def unsigned() -> Iterator[ServerThread]:
    config = harken_config(phone_profiles=PROFILES, public_url="https://agent.example.com")
    with serving(config) as running:
        yield running


def post(
    server: ServerThread,
    target: str = "/twilio/voice",
    form: dict[str, str] | None = None,
    *,
    signed_url: str | None = None,
    signed_form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST ``form`` to ``target``; signed for ``signed_url`` (default: the URL requested)."""
    form = CALL if form is None else form
    sent = {"Content-Type": FORM, **(headers or {})}
    if signed_url != "":
        url = signed_url or server.http(target)
        sent["X-Twilio-Signature"] = RequestValidator(TOKEN).compute_signature(
            url, signed_form if signed_form is not None else form
        )
    return httpx.post(server.http(target), content=urlencode(form), headers=sent, timeout=10)


def stream_of(response: httpx.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None
    parameters = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return stream.attrib["url"], parameters


# ------------------------------------------------------------------------------- over HTTP


def test_a_signed_post_connects_the_call_to_the_default_profiles_stream(
    signed: ServerThread,
) -> None:
    url, parameters = stream_of(post(signed))
    assert url == f"ws://127.0.0.1:{signed.port}/twilio"
    assert parameters == {
        "agent": "default",
        "from": CALL["From"],
        "to": CALL["To"],
        "call_sid": CALL["CallSid"],
    }


def test_the_agent_query_picks_the_profile_and_hands_over_its_token(
    signed: ServerThread,
) -> None:
    url, parameters = stream_of(post(signed, "/twilio/voice?agent=secure"))
    assert parameters["agent"] == "secure"
    assert parameters["token"] == "s3cret&<\"'>"  # escaped in the XML, intact once parsed
    # the TwiML's parameters open a stream the server answers with that profile's greeting
    with CarrierClient(url, parameters) as call:
        assert call.wait_for("media", timeout=10).data["media"]["payload"]


def test_behind_a_proxy_the_url_comes_from_host_and_x_forwarded_proto(
    signed: ServerThread,
) -> None:
    headers = {"Host": "agent.example.com", "X-Forwarded-Proto": "https"}
    signed_url = "https://agent.example.com/twilio/voice?agent=secure"
    response = post(signed, "/twilio/voice?agent=secure", signed_url=signed_url, headers=headers)
    assert stream_of(response)[0] == "wss://agent.example.com/twilio"
    # Twilio's signature of the URL with the default port is accepted too
    with_port = "https://agent.example.com:443/twilio/voice?agent=secure"
    response = post(signed, "/twilio/voice?agent=secure", signed_url=with_port, headers=headers)
    assert response.status_code == 200


def test_a_bad_signature_is_refused(signed: ServerThread) -> None:
    response = post(signed, signed_url="https://elsewhere.example.com/twilio/voice")
    assert response.status_code == 403
    assert "Traceback" not in response.text
    wrong = {"Content-Type": FORM, "X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    response = httpx.post(signed.http("/twilio/voice"), content=urlencode(CALL), headers=wrong)
    assert response.status_code == 403


def test_a_missing_signature_is_refused(signed: ServerThread) -> None:
    assert post(signed, signed_url="").status_code == 403


def test_a_body_changed_after_signing_is_refused(signed: ServerThread) -> None:
    tampered = {**CALL, "From": "+15550000000"}
    assert post(signed, form=tampered, signed_form=CALL).status_code == 403
    unsigned_query = signed.http("/twilio/voice")
    response = post(signed, "/twilio/voice?agent=secure", signed_url=unsigned_query)
    assert response.status_code == 403  # the query is signed too


def test_without_an_auth_token_an_unsigned_post_is_answered(unsigned: ServerThread) -> None:
    url, parameters = stream_of(post(unsigned, "/twilio/voice?agent=secure", signed_url=""))
    assert url == "wss://agent.example.com/twilio"  # public_url, whatever the Host header says
    assert parameters["token"] == "s3cret&<\"'>"


def test_other_methods_and_unknown_profiles(signed: ServerThread) -> None:
    response = httpx.get(signed.http("/twilio/voice"))
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    response = post(signed, "/twilio/voice?agent=nobody")
    assert response.status_code == 404
    assert "nobody" in response.text


def test_an_oversized_or_chunked_body_is_refused(signed: ServerThread) -> None:
    big = {**CALL, "Padding": "x" * (post_body.MAX_BODY + 1)}
    response = post(signed, form=big)
    assert response.status_code == 413
    chunks = iter([urlencode(CALL).encode()])
    response = httpx.post(signed.http("/twilio/voice"), content=chunks, headers={"X-A": "b"})
    assert response.status_code == 411  # an iterator body goes out chunked


def raw_exchange(port: int, parts: list[bytes]) -> bytes:
    """Send ``parts`` over one TCP connection with pauses between; read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in parts:
            sock.sendall(part)
            time.sleep(0.05)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_post_arriving_in_several_tcp_chunks_is_read_whole(signed: ServerThread) -> None:
    body = urlencode(CALL).encode()
    url = signed.http("/twilio/voice")
    head = (
        f"POST /twilio/voice HTTP/1.1\r\nHost: 127.0.0.1:{signed.port}\r\n"
        f"Content-Type: {FORM}\r\nContent-Length: {len(body)}\r\n"
        f"X-Twilio-Signature: {RequestValidator(TOKEN).compute_signature(url, CALL)}\r\n\r\n"
    ).encode()
    parts = [head[:3], head[3:20], head[20:], body[:10], body[10:50], body[50:]]
    answer = raw_exchange(signed.port, parts)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"<Connect><Stream" in answer and b"Content-Type: text/xml" in answer


def test_websockets_and_healthz_still_work_on_the_same_server(signed: ServerThread) -> None:
    assert post(signed, signed_url="").status_code == 403  # some POSTs first
    assert httpx.get(signed.http("/healthz")).json()["status"] == "ok"
    with connect(signed.url()) as ws:  # the agent API's handshake, then a message
        assert '"Welcome"' in str(ws.recv(timeout=5))
    answer = raw_exchange(signed.port, [b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert raw_exchange(signed.port, [b"PO", b"ST /healthz HTTP/1.1\r\n\r\n"]).startswith(
        b"HTTP/1.1 200 "
    )


# ------------------------------------------------------------------------------- pure parts


class MultiDict(dict[str, list[str]]):
    """A repeated-name form, as Flask hands it to Twilio's validator."""

    def getall(self, name: str) -> list[str]:
        return self[name]


def test_the_signature_is_twilios_with_repeated_parameters_and_a_query() -> None:
    url = "https://agent.example.com/twilio/voice?agent=support&x=%20y"
    form = [("To", "+1555"), ("Digits", "2"), ("Digits", "1"), ("Digits", "2"), ("Empty", "")]
    multi = MultiDict(To=["+1555"], Digits=["2", "1", "2"], Empty=[""])
    expected = RequestValidator(TOKEN).compute_signature(url, multi)
    assert twilio_voice.signature(TOKEN, url, form) == expected
    assert twilio_voice.is_valid(TOKEN, url, form, expected)
    assert not twilio_voice.is_valid(TOKEN, url, form[:-1], expected)
    assert not twilio_voice.is_valid("another-token", url, form, expected)
    sha256 = RequestValidator(TOKEN).compute_signature(url, multi, algorithm="HMAC_SHA256")
    assert twilio_voice.is_valid(TOKEN, url, form, sha256, "HMAC_SHA256")
    assert not twilio_voice.is_valid(TOKEN, url, form, sha256)
    assert twilio_voice.algorithm_of("key=abc,algorithm=HMAC_SHA256") == "HMAC_SHA256"
    assert twilio_voice.algorithm_of("") == "HMAC_SHA1"


@pytest.mark.parametrize(
    ("signed_url", "checked_url"),
    [
        ("https://a.example.com/v?q=1", "https://a.example.com:443/v?q=1"),
        ("https://a.example.com:443/v", "https://a.example.com/v"),
        ("http://a.example.com:80/v", "http://a.example.com/v"),
        ("http://a.example.com:8080/v", "http://a.example.com:8080/v"),
    ],
)
def test_the_url_with_or_without_its_default_port_is_accepted_like_twilio_does(
    signed_url: str, checked_url: str
) -> None:
    form = [("CallSid", "CA1")]
    given = RequestValidator(TOKEN).compute_signature(signed_url, dict(form))
    assert RequestValidator(TOKEN).validate(checked_url, dict(form), given)
    assert twilio_voice.is_valid(TOKEN, checked_url, form, given)


def test_the_twiml_escapes_every_value() -> None:
    body = twilio_voice.twiml("wss://h/twilio?a=1&b=2", [("token", "<&\"'\n>")])
    stream = ET.fromstring(body).find("./Connect/Stream")
    assert stream is not None
    assert stream.attrib["url"] == "wss://h/twilio?a=1&b=2"
    assert stream.find("Parameter").attrib == {"name": "token", "value": "<&\"'\n>"}  # type: ignore[union-attr]


def test_the_origin_and_the_stream_url() -> None:
    assert twilio_voice.origin_of("https://a.example.com/", {}) == "https://a.example.com"
    headers = {"Host": "h:8080", "X-Forwarded-Proto": "https, http"}
    assert twilio_voice.origin_of("", headers) == "https://h:8080"
    assert twilio_voice.origin_of("", {"Host": "h"}) == "http://h"
    assert twilio_voice.origin_of("", {}) == ""
    assert twilio_voice.stream_url("https://h", "/twilio") == "wss://h/twilio"
    assert twilio_voice.stream_url("http://h:1", "/t") == "ws://h:1/t"


def feed_all(reader: BodyReader, data: bytes, step: int = 1) -> bytes:
    return b"".join(reader.feed(data[i : i + step]) for i in range(0, len(data), step))


def test_the_body_reader_byte_by_byte() -> None:
    request = b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX: y\r\n\r\nhello"
    reader = BodyReader()
    assert feed_all(reader, request + b"GET / HTTP/1.1\r\n\r\n") == (
        b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n"
    )
    assert reader.body == b"hello" and reader.error is None and not reader.passing
    handshake = b"GET /agent HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    reader = BodyReader()
    assert feed_all(reader, handshake, 3) == handshake
    assert reader.passing and reader.body is None
    reader = BodyReader()
    assert reader.feed(b"P") == b"" and reader.feed(b"UT / HTTP/1.1\r\n") == b"PUT / HTTP/1.1\r\n"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n", 411),
        (b"Content-Length: 99999999\r\n", 413),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"X-Big: " + b"x" * post_body.MAX_HEAD + b"\r\n", 431),
    ],
)
def test_the_body_reader_refuses_what_it_cannot_read(head: bytes, status: int) -> None:
    reader = BodyReader()
    given = feed_all(reader, b"POST /twilio/voice HTTP/1.1\r\n" + head + b"\r\n12345", 4096)
    assert reader.error is not None and reader.error[0] == status
    assert given.endswith(b"\r\n\r\n") and b"Content-Length" not in given
    assert b"Transfer-Encoding" not in given
    assert reader.feed(b"more") == b""  # the rest of the connection is dropped


def test_the_body_reader_answers_expect_100_continue() -> None:
    reader = BodyReader()
    head = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    assert reader.feed(head) == b""
    assert reader.interim == post_body.CONTINUE
    assert reader.feed(b"abc").startswith(b"POST / HTTP/1.1\r\n") and reader.body == b"abc"


# ------------------------------------------------------------------------------- config


def test_public_url_and_the_auth_token_in_the_config() -> None:
    env = {"HARKEN_TWILIO_AUTH_TOKEN": "tok", "HARKEN_PUBLIC_URL": "https://a.example.com:8443"}
    config = load_config(None, env, None)
    assert config.twilio_auth_token == "tok"
    assert config.public_url == "https://a.example.com:8443"
    assert load_config(None, {}, {"public_url": "http://a.example.com/"}).public_url
    for bad in (
        "agent.example.com",
        "ftp://a.example.com",
        "https://a.example.com/path",
        "https://a.example.com?x=1",
        "https://a.example.com#x",
        "https://user@a.example.com",
        "https://a.example.com:port",
        "https://",
    ):
        with pytest.raises(ConfigError, match="public_url"):
            load_config(None, {}, {"public_url": bad})
