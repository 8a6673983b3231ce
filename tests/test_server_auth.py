"""Reading credentials and the client's session id from the upgrade request (PROTOCOL.md §10)."""

from __future__ import annotations

import pytest
from websockets.datastructures import Headers

from harken.server.auth import (
    SESSION_ID_LIMIT,
    client_session_id,
    credential,
    is_authorized,
    select_scheme,
    subprotocol_pairs,
)

UUID = "6f1c3e0a-9b7d-4c2e-8f5a-1d2b3c4d5e6f"


def headers(*items: tuple[str, str]) -> Headers:
    return Headers(list(items))


@pytest.mark.parametrize(
    "authorization",
    [
        "Token k1",
        "token k1",
        "TOKEN k1",
        "Bearer k1",
        "bearer k1",  # deepgram-sdk 7.x with access_token=
        "BEARER k1",
        "bEaReR k1",
        "Token\tk1",
        "  Token   k1  ",
    ],
)
def test_authorization_scheme_in_any_case(authorization: str) -> None:
    given = headers(("Authorization", authorization))
    assert credential(given) == "k1"
    assert is_authorized(given, ["k0", "k1"])


@pytest.mark.parametrize("authorization", ["Basic k1", "Token", "Token   ", "k1", ""])
def test_other_authorization_values_present_nothing(authorization: str) -> None:
    assert credential(headers(("Authorization", authorization))) is None
    assert not is_authorized(headers(("Authorization", authorization)), ["k1"])


def test_the_first_usable_authorization_header_counts() -> None:
    given = headers(("Authorization", "Basic x"), ("Authorization", "Token k1"))
    assert credential(given) == "k1"


@pytest.mark.parametrize(
    ("offered", "key", "session", "echo"),
    [
        (["token", "k1"], "k1", None, "token"),
        (["bearer", "k1"], "k1", None, "bearer"),
        # @deepgram/sdk 5.x in a browser
        (["token", "k1", "x-deepgram-session-id", UUID], "k1", UUID, "token"),
        (["bearer", "k1", "x-deepgram-session-id", UUID], "k1", UUID, "bearer"),
        (["x-deepgram-session-id", UUID, "Token", "k1"], "k1", UUID, "Token"),
        (["token", "token"], "token", None, "token"),  # a key spelled like a scheme is a value
        (["x-deepgram-session-id", "token", "bearer", "k1"], "k1", "token", "bearer"),
        (["token"], None, None, "token"),
        (["k1"], None, None, None),
        ([], None, None, None),
    ],
)
def test_subprotocol_list(
    offered: list[str], key: str | None, session: str | None, echo: str | None
) -> None:
    given = headers(("Sec-WebSocket-Protocol", ", ".join(offered))) if offered else headers()
    assert credential(given) == key
    assert client_session_id(given) == session
    assert select_scheme(offered) == echo


def test_subprotocol_pairs_in_order_and_the_first_one_counts() -> None:
    offered = ["x", "Token", "a", "bearer", "b", "X-Deepgram-Session-Id", "s", "token"]
    assert subprotocol_pairs(offered) == [
        ("Token", "a"),
        ("bearer", "b"),
        ("X-Deepgram-Session-Id", "s"),
    ]
    given = headers(("Sec-WebSocket-Protocol", ", ".join(offered)))
    assert (credential(given), client_session_id(given), select_scheme(offered)) == (
        "a",
        "s",
        "Token",
    )
    assert credential(headers(("Sec-WebSocket-Protocol", "bearer, b, token, a"))) == "b"
    split = headers(("Sec-WebSocket-Protocol", "token"), ("Sec-WebSocket-Protocol", " k1 ,"))
    assert credential(split) == "k1"  # entries from several header lines form one list


def test_header_wins_over_the_subprotocol() -> None:
    given = headers(
        ("Authorization", "Token from-header"),
        ("x-deepgram-session-id", "header-session"),
        ("Sec-WebSocket-Protocol", f"token, from-list, x-deepgram-session-id, {UUID}"),
    )
    assert credential(given) == "from-header"
    assert client_session_id(given) == "header-session"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (UUID, UUID),
        (f"  {UUID}  ", UUID),
        ("a b\tc\u00e9d\u00ff", "abcd"),  # printable ASCII without spaces only
        ("x" * 1000, "x" * SESSION_ID_LIMIT),
        ("   ", None),
        ("é", None),
        ("", None),
    ],
)
def test_client_session_id_is_bounded_and_printable(value: str, kept: str | None) -> None:
    assert client_session_id(headers(("x-deepgram-session-id", value))) == kept


def test_no_session_id() -> None:
    assert client_session_id(headers(("Authorization", "Token k"))) is None


def test_open_mode_accepts_anything() -> None:
    assert is_authorized(headers(), [])
    assert not is_authorized(headers(), ["k"])
    assert not is_authorized(headers(("Authorization", "Token wrong")), ["k"])
