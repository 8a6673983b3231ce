"""One core, two thin shells: both clients expose the same public surface."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from harken import AgentWebSocketClient, AsyncAgentWebSocketClient
from harken.client import core

SYNC_ONLY_NAMES = {"on", "is_connected", "url"}  # not coroutines in the async client either
REQUIRED = {
    "on",
    "start",
    "send",
    "send_settings",
    "update_prompt",
    "update_speak_options",
    "inject_agent_message",
    "inject_user_message",
    "send_function_call_response",
    "keep_alive",
    "force_end_turn",
    "send_audio",
    "finish",
    "close",
    "is_connected",
}


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_both_shells_expose_the_same_public_names() -> None:
    assert public(AgentWebSocketClient) == public(AsyncAgentWebSocketClient)
    assert public(AgentWebSocketClient) >= REQUIRED


def test_same_signatures_and_the_async_ones_are_coroutines() -> None:
    for name in public(AgentWebSocketClient):
        sync_attr = getattr(AgentWebSocketClient, name)
        async_attr = getattr(AsyncAgentWebSocketClient, name)
        if isinstance(sync_attr, property):
            assert isinstance(async_attr, property), name
            continue
        assert not inspect.iscoroutinefunction(sync_attr), name
        assert inspect.iscoroutinefunction(async_attr) is (name not in SYNC_ONLY_NAMES), name
        sync_params = list(inspect.signature(sync_attr).parameters)
        async_params = list(inspect.signature(async_attr).parameters)
        assert sync_params == async_params, name


def test_the_core_does_no_io() -> None:
    tree = ast.parse(Path(core.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = {"asyncio", "threading", "socket", "websockets", "time", "select", "os"}
    assert not imported & forbidden, imported & forbidden


def test_shells_are_thin() -> None:
    for module in ("sync", "asyncio"):
        path = Path(core.__file__).with_name(f"{module}.py")
        assert len(path.read_text().splitlines()) < 300, module
