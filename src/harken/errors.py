"""The one error tree of harken.

::

    HarkenError
    ├── ProtocolError                 wire-level trouble; carries a Deepgram error ``code``
    │   ├── LocalProtocolError        *we* were asked to do something the protocol forbids
    │   └── RemoteProtocolError       the *peer* sent something the protocol forbids
    ├── ConfigError                   bad server configuration (file, environment, flags)
    ├── ProviderError                 a VAD/STT/LLM/TTS/function provider failed; ``retryable``
    │   └── ModelError                a model file is missing, corrupt or fails to load
    └── DeepgramApiError              raised by the SDK (``harken.client``) to its caller

Third-party exceptions are translated at the boundary where they are caught, always with
``raise ... from exc``, so a client only ever sees a wire ``Error{code, description}``.
"""

from __future__ import annotations


class HarkenError(Exception):
    """Base class of every error harken raises on purpose."""


class ProtocolError(HarkenError):
    """A protocol violation with the Deepgram error code that names it on the wire."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class LocalProtocolError(ProtocolError):
    """Our side tried to do something the protocol (or the current state) does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or out of order."""


class ConfigError(HarkenError):
    """The server configuration is invalid."""


class ProviderError(HarkenError):
    """A provider job failed. ``retryable`` says whether a fallback or retry may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ModelError(ProviderError):
    """A model is missing, corrupt (sha256 mismatch) or cannot be loaded."""


class ContextTooLong(ProviderError):
    """The prompt does not fit the model's context window: every reply would fail."""


class DeepgramApiError(HarkenError):
    """Raised by the SDK for API-level failures (bad credentials, invalid options, ...)."""

    def __init__(self, message: str, status: str = "", original_error: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.original_error = original_error
