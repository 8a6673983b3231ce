"""Shared by the official-SDK drivers (run under .venv-dg4 / .venv-dg3, not under pytest).

Records every event the official client emits, so the pytest side can assert on a JSON report.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def handler(self, name: str) -> Any:
        def handle(_client: Any, *args: Any, **kwargs: Any) -> None:
            payload = args[0] if args else next(iter(kwargs.values()), None)
            with self._lock:
                self.events.append((name, str(payload)))

        return handle

    async_handler_names: tuple[str, ...] = ()

    def async_handler(self, name: str) -> Any:
        sync = self.handler(name)

        async def handle(client: Any, *args: Any, **kwargs: Any) -> None:
            sync(client, *args, **kwargs)

        return handle

    def count(self, name: str, contains: str = "") -> int:
        with self._lock:
            return sum(1 for n, p in self.events if n == name and contains in p)

    def wait(self, name: str, contains: str = "", n: int = 1, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(name, contains) >= n:
                return True
            time.sleep(0.01)
        return False

    def report(self, **extra: Any) -> None:
        with self._lock:
            names = [n for n, _ in self.events]
            errors = [p for n, p in self.events if n == "Error"]
            unhandled = [p for n, p in self.events if n == "Unhandled"]
        print(json.dumps({"names": names, "errors": errors, "unhandled": unhandled, **extra}))
