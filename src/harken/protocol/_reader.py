"""Typed, path-aware access to decoded JSON for the codec.

Every failure raises :class:`~harken.errors.RemoteProtocolError` whose description names the
field path (``agent.think.functions[0].name``), what was expected and what came instead.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from harken.errors import RemoteProtocolError
from harken.protocol import codes

MISSING: Final = object()
"""Stands for a key that is absent (distinct from JSON ``null``)."""


def quote(text: str, limit: int = 60) -> str:
    """``text`` as a JSON string for an error text, shortened past ``limit`` characters."""
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)


def json_kind(value: object) -> str:
    """Describe a decoded JSON value for an error text ('the string "abc"', "an array", ...)."""
    if value is MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    return "an array" if isinstance(value, list) else "an object"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def invalid(path: str, problem: str) -> NoReturn:
    """Raise ``INVALID_SETTINGS``: the field parsed but its value is not acceptable."""
    raise RemoteProtocolError(codes.INVALID_SETTINGS, f"Invalid settings: {path} {problem}.")


@dataclass(slots=True)
class Context:
    """One parse: who sent the frame, strict or lenient, and the unknown keys seen so far."""

    side: str = "client"
    strict: bool = False
    ignored: list[str] = field(default_factory=list)

    @property
    def code(self) -> str:
        if self.side == "client":
            return codes.UNPARSABLE_CLIENT_MESSAGE
        return codes.UNPARSABLE_SERVER_MESSAGE

    def fail(self, description: str) -> NoReturn:
        raise RemoteProtocolError(self.code, description)

    def expected(self, path: str, what: str, value: object) -> NoReturn:
        self.fail(
            f"Error parsing {self.side} message. Check the {path} field against the API spec: "
            f"expected {what}, got {json_kind(value)}."
        )

    def unknown(self, path: str) -> None:
        """An unknown key: an error in strict mode, else remembered in ``ignored``."""
        if self.strict:
            self.fail(
                f"Error parsing {self.side} message. Check the {path} field against the API "
                "spec: it is not a known field (this server runs in strict mode)."
            )
        self.ignored.append(path)

    def node(self, value: object, path: str, known: Collection[str] | None) -> Node:
        """Wrap a JSON object; keys outside ``known`` are reported (``None``: free-form)."""
        if not isinstance(value, dict):
            self.expected(path, "an object", value)
        if known is not None:
            for key in value:
                if key not in known:
                    self.unknown(join(path, key))
        return Node(self, value, path)


@dataclass(frozen=True, slots=True)
class Node:
    """A JSON object at ``path``. Optional getters treat ``null`` like an absent key."""

    ctx: Context
    data: dict[str, Any]
    path: str

    def at(self, key: str) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def req_str(self, key: str) -> str:
        value = self.data.get(key, MISSING)
        if not isinstance(value, str):
            self.ctx.expected(self.at(key), "a string", value)
        return value

    def opt_str(self, key: str) -> str | None:
        return self.req_str(key) if self.has(key) else None

    def alias_str(self, *keys: str) -> str:
        """Like :meth:`opt_alias_str`, but one of them is required (named by the first)."""
        value = self.opt_alias_str(*keys)
        if value is None:
            self.ctx.expected(self.at(keys[0]), "a string", self.data.get(keys[0], MISSING))
        return value

    def opt_alias_str(self, *keys: str) -> str | None:
        """The first of ``keys`` present (aliases, preferred first), or ``None``."""
        for key in keys:
            if self.has(key):
                return self.req_str(key)
        return None

    def req_bool(self, key: str) -> bool:
        value = self.data.get(key, MISSING)
        if not isinstance(value, bool):
            self.ctx.expected(self.at(key), "a boolean", value)
        return value

    def opt_bool(self, key: str, default: bool) -> bool:
        return self.req_bool(key) if self.has(key) else default

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            self.ctx.expected(self.at(key), "an integer", value)
        return value

    def req_number(self, key: str) -> float:
        value = self.data.get(key, MISSING)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.ctx.expected(self.at(key), "a number", value)
        try:
            return float(value)
        except OverflowError:  # an integer literal beyond the float range
            self.ctx.expected(self.at(key), "a number in the float range", value)

    def opt_number(self, key: str) -> float | None:
        return self.req_number(key) if self.has(key) else None

    def opt_obj(self, key: str, known: Collection[str] | None) -> Node | None:
        return self.ctx.node(self.data[key], self.at(key), known) if self.has(key) else None

    def opt_list(self, key: str) -> list[tuple[str, Any]] | None:
        """``[(path, item), ...]`` of an array field; ``None`` when absent."""
        if not self.has(key):
            return None
        value = self.data[key]
        if not isinstance(value, list):
            self.ctx.expected(self.at(key), "an array", value)
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def one_or_many(self, key: str) -> list[tuple[str, Any]] | None:
        """Like :meth:`opt_list`, but a lone object counts as a one-entry array."""
        value = self.data.get(key)
        if isinstance(value, dict):
            return [(self.at(key), value)]
        if value is not None and not isinstance(value, list):
            self.ctx.expected(self.at(key), "an object or an array", value)
        return self.opt_list(key)

    def opt_str_list(self, key: str) -> tuple[str, ...] | None:
        items = self.opt_list(key)
        if items is None:
            return None
        for path, item in items:
            if not isinstance(item, str):
                self.ctx.expected(path, "a string", item)
        return tuple(item for _, item in items)

    def opt_enum(self, key: str, allowed: tuple[str, ...]) -> str | None:
        """An optional string restricted to ``allowed``; other values do not parse."""
        value = self.opt_str(key)
        if value is not None and value not in allowed:
            self.ctx.expected(self.at(key), "one of " + ", ".join(allowed), value)
        return value

    def req_enum(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.opt_enum(key, allowed)
        if value is None:
            self.ctx.expected(
                self.at(key), "one of " + ", ".join(allowed), self.data.get(key, MISSING)
            )
        return value
