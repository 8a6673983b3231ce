"""``DeepgramClientOptions``: the client configuration (4.8.1 surface, defects fixed)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["DeepgramClientOptions", "truthy"]

_TRUE = {"true", "1", "yes", "on"}


def truthy(value: Any) -> bool:
    """``True``/``"true"``/``"1"``/``"yes"``/``"on"`` are true; ``"false"`` is false."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


class DeepgramClientOptions:
    """Client configuration, as in 4.8.1, but ``url`` is honoured (it is never overwritten).

    ``url``: ``ws://host:port`` (``/v1/agent/converse`` is added when there is no path), ``http``
    and ``https`` map to ``ws``/``wss``; empty means ``$HARKEN_URL``, else
    ``ws://127.0.0.1:8765``. ``options`` keys: ``keepalive``/``keep_alive`` (KeepAlive every 5 s;
    ``"false"`` is false), ``keepalive_interval`` (seconds, harken), ``termination_exception``
    (a raising handler closes the connection), ``termination_exception_connect`` (``start()``
    raises ``DeepgramApiError`` instead of returning False), ``termination_exception_send``
    (``send()`` raises instead of returning False), ``open_timeout`` (seconds, default 10).
    """

    def __init__(
        self,
        api_key: str = "",
        access_token: str = "",
        url: str = "",
        verbose: int = logging.WARNING,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.api_key = api_key or ""
        self.access_token = access_token or ""
        self.url = url or ""
        self.verbose = verbose
        self.headers: dict[str, str] = dict(headers or {})
        self.options: dict[str, Any] = dict(options or {})

    def set_apikey(self, api_key: str) -> None:
        self.api_key, self.access_token = api_key, ""

    def set_access_token(self, access_token: str) -> None:
        self.api_key, self.access_token = "", access_token

    def resolved_url(self) -> str:
        """``url``, else ``$HARKEN_URL``, else ``""`` (meaning ``ws://127.0.0.1:8765``)."""
        return self.url or os.environ.get("HARKEN_URL", "")

    def is_keep_alive_enabled(self) -> bool:
        return truthy(self.options.get("keepalive")) or truthy(self.options.get("keep_alive"))

    def resolved_credentials(self) -> tuple[str, str]:
        """(scheme, credential): explicit key, explicit token, then the environment."""
        if self.api_key:
            return "Token", self.api_key
        if self.access_token:
            return "Bearer", self.access_token
        for name in ("HARKEN_API_KEY", "DEEPGRAM_API_KEY"):
            if os.environ.get(name):
                return "Token", os.environ[name]
        if os.environ.get("DEEPGRAM_ACCESS_TOKEN"):
            return "Bearer", os.environ["DEEPGRAM_ACCESS_TOKEN"]
        return "", ""

    def __repr__(self) -> str:
        return f"DeepgramClientOptions(url={self.url!r}, options={self.options!r})"
