"""``DeepgramClient`` and ``client.agent.websocket.v("1")`` / ``.asyncwebsocket.v("1")``.

Differences from 4.8.1, all deliberate: the URL is honoured (``url=``, ``config.url``,
``$HARKEN_URL``, else ``ws://127.0.0.1:8765``) and the caller's ``DeepgramClientOptions`` is
never mutated (the client keeps its own copy).
"""

from __future__ import annotations

import copy

from harken.client.asyncio import AsyncAgentWebSocketClient
from harken.client.config import DeepgramClientOptions
from harken.client.sync import AgentWebSocketClient
from harken.errors import DeepgramApiError

__all__ = ["AgentRouter", "DeepgramClient"]


class _Version:
    def __init__(self, config: DeepgramClientOptions, parent: str) -> None:
        self._config = config
        self._parent = parent

    def _check(self, version: str) -> None:
        if version != "1":
            raise DeepgramApiError(f"Invalid module version {version!r}: only '1' exists")


class _SyncVersion(_Version):
    def v(self, version: str = "") -> AgentWebSocketClient:
        """A new ``AgentWebSocketClient`` (``version`` must be ``"1"``)."""
        self._check(version)
        return AgentWebSocketClient(copy.deepcopy(self._config))


class _AsyncVersion(_Version):
    def v(self, version: str = "") -> AsyncAgentWebSocketClient:
        """A new ``AsyncAgentWebSocketClient`` (``version`` must be ``"1"``)."""
        self._check(version)
        return AsyncAgentWebSocketClient(copy.deepcopy(self._config))


class AgentRouter:
    """``client.agent``: ``.websocket.v("1")`` and ``.asyncwebsocket.v("1")``."""

    def __init__(self, config: DeepgramClientOptions) -> None:
        self._config = config

    @property
    def websocket(self) -> _SyncVersion:
        return _SyncVersion(self._config, "websocket")

    @property
    def asyncwebsocket(self) -> _AsyncVersion:
        return _AsyncVersion(self._config, "asyncwebsocket")


class DeepgramClient:
    """Entry point: ``DeepgramClient(api_key=None, config=None, access_token=None, url=None)``.

    Credentials: ``api_key`` (sent as ``Authorization: Token``) or ``access_token`` (``Bearer``),
    then the config's, then ``$HARKEN_API_KEY``/``$DEEPGRAM_API_KEY``/``$DEEPGRAM_ACCESS_TOKEN``
    (read when connecting). No credential means no ``Authorization`` header. The second
    positional argument may be a ``DeepgramClientOptions`` (4.8.1) or a URL string.
    """

    def __init__(
        self,
        api_key: str | None = None,
        config: DeepgramClientOptions | str | None = None,
        access_token: str | None = None,
        url: str | None = None,
    ) -> None:
        if isinstance(config, str):
            config, url = None, url or config
        self._config = copy.deepcopy(config) if config is not None else DeepgramClientOptions()
        if api_key:
            self._config.set_apikey(api_key)
        elif access_token:
            self._config.set_access_token(access_token)
        if url:
            self._config.url = url
        self.api_key = self._config.api_key
        self.access_token = self._config.access_token

    @property
    def config(self) -> DeepgramClientOptions:
        return self._config

    @property
    def agent(self) -> AgentRouter:
        return AgentRouter(self._config)
