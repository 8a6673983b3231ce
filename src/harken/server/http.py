"""HTTP side of the server: routing of every request before the WebSocket upgrade.

``GET /healthz`` (200 once providers are loaded, else 503), ``GET /metrics`` (Prometheus text),
``GET /`` and ``/static/<file>`` (the browser page, when present), the two agent WebSocket paths
(auth → 401 before the upgrade; a fresh ``dg-request-id``), ``POST {twilio_path}/voice``
(Twilio's voice webhook, :mod:`harken.server.twilio_voice`), and 404 for anything else. Query
strings are ignored, except by the voice webhook. A POST whose body is refused (too large,
chunked) is answered before any route (:mod:`harken.server.post_body`).
"""

from __future__ import annotations

import json
import logging
import mimetypes
import uuid
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import cast

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from harken.protocol.messages import Generation
from harken.server import auth
from harken.server.metrics import Metrics
from harken.server.transport import HarkenConnection
from harken.server.twilio_voice import VoiceWebhook

log = logging.getLogger("harken.server")

WS_PATHS = {"/v1/agent/converse": Generation.GA, "/agent": Generation.EA}
STATIC_DIR = Path(__file__).parent / "static"
REQUEST_ID_HEADER = "dg-request-id"

Health = Callable[[], tuple[bool, dict[str, object]]]

# The page's own file types (the platform's mimetypes table varies, and lacks charsets).
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


def respond(status: int, reason: str, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status, reason, headers, body)


def json_response(status: int, reason: str, payload: dict[str, object]) -> Response:
    return respond(status, reason, json.dumps(payload).encode(), "application/json")


def not_found(path: str) -> Response:
    return json_response(404, "Not Found", {"err_code": "NOT_FOUND", "err_msg": f"No route {path}"})


REFUSALS = {  # /healthz status -> the 503's err_code and err_msg
    "loading": ("NOT_READY", "The server is still loading its models."),
    "full": ("TOO_MANY_SESSIONS", "This server has no room for another session; retry."),
    "draining": ("SERVER_GOING_AWAY", "This server is shutting down; connect to another one."),
    "stopping": ("SERVER_GOING_AWAY", "This server is shutting down; connect to another one."),
}


class Routes:
    """``process_request`` / ``process_response`` / ``select_subprotocol`` for ``serve()``."""

    def __init__(
        self,
        api_keys: Sequence[str],
        metrics: Metrics,
        health: Health,
        carriers: dict[str, str] | None = None,
        voice: VoiceWebhook | None = None,
        metrics_key: bool = False,
    ) -> None:
        self._keys = tuple(api_keys)
        self._metrics_key = metrics_key  # /metrics asks for an API key too
        self._metrics = metrics
        self._health = health
        self._carriers = carriers or {}  # path -> carrier ("twilio", "telnyx")
        self._voice = voice

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        refused = cast(HarkenConnection, connection).body_error
        if refused is not None:
            status, why = refused
            return respond(status, HTTPStatus(status).phrase, f"{why}\n".encode(), "text/plain")
        path = request.path.split("?", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        generation = WS_PATHS.get(path)
        if generation is not None:
            return self._agent(cast(HarkenConnection, connection), request, generation)
        carrier = self._carriers.get(path)
        if carrier is not None:  # authenticated by the profile's token inside the stream
            return self._call(cast(HarkenConnection, connection), carrier)
        if self._voice is not None and path == self._voice.path:
            return self._twilio_voice(self._voice, cast(HarkenConnection, connection), request)
        if path == "/healthz":
            ok, payload = self._health()
            return json_response(200 if ok else 503, "OK" if ok else "Service Unavailable", payload)
        if path == "/metrics":
            denied = auth.refusal(request.headers, self._keys if self._metrics_key else ())
            if denied is not None:
                return denied
            return respond(200, "OK", self._metrics.render(), self._metrics.content_type)
        if path in ("/", "/index.html") or path.startswith("/static/"):
            return self._static(path)
        return not_found(path)

    def _agent(
        self, connection: HarkenConnection, request: Request, generation: Generation
    ) -> Response | None:
        denied = auth.refusal(request.headers, self._keys)
        if denied is not None:
            log.info("rejected %s: credentials (%d)", request.path, denied.status_code)
            return denied
        refused = self._refused()
        if refused is not None:
            return refused
        connection.request_id = str(uuid.uuid4())
        connection.generation = generation
        return None  # let websockets perform (or refuse) the upgrade

    def _refused(self) -> Response | None:
        """503 before the upgrade when no session can be taken (loading, full, draining): a
        balancer (nginx ``proxy_next_upstream http_503``) tries another replica."""
        ok, health = self._health()
        if ok or health.get("status") == "degraded":  # a stall may be one long step: serve on
            return None
        code, message = REFUSALS.get(str(health.get("status")), REFUSALS["loading"])
        response = json_response(503, "Service Unavailable", {"err_code": code, "err_msg": message})
        response.headers["Retry-After"] = "1"
        return response

    def _call(self, connection: HarkenConnection, carrier: str) -> Response | None:
        refused = self._refused()
        if refused is not None:
            return refused
        connection.request_id = str(uuid.uuid4())
        connection.carrier = carrier
        return None

    def _twilio_voice(
        self, voice: VoiceWebhook, connection: HarkenConnection, request: Request
    ) -> Response:
        if request.method == "POST" and not self._health()[0]:  # Twilio tries its fallback URL
            return respond(503, "Service Unavailable", b"not ready\n", "text/plain")
        body = connection.form_body or b""
        answer = voice.answer(request.method, request.path, request.headers, body)
        response = respond(
            answer.status, HTTPStatus(answer.status).phrase, answer.body, answer.content_type
        )
        for name, value in answer.headers:
            response.headers[name] = value
        return response

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        request_id = getattr(connection, "request_id", "")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        return None

    def select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        chosen = auth.select_scheme(offered)
        return Subprotocol(chosen) if chosen is not None else None

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "/index.html") else path[len("/static/") :]
        root = STATIC_DIR.resolve()
        target = (root / name).resolve()
        if root not in target.parents or not target.is_file():
            if path == "/":
                text = (
                    "harken voice agent server\n"
                    "WebSocket: /v1/agent/converse (GA), /agent (early access)\n"
                    "Health: /healthz  Metrics: /metrics\n"
                )
                return respond(200, "OK", text.encode(), "text/plain; charset=utf-8")
            return not_found(path)
        content_type = (
            STATIC_TYPES.get(target.suffix)
            or mimetypes.guess_type(target.name)[0]
            or "application/octet-stream"
        )
        return respond(200, "OK", target.read_bytes(), content_type)
