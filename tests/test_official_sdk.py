"""The official deepgram-sdk clients, pointed at harken by URL only (PROTOCOL.md section 7.1).

Each flow runs in the SDK's own virtualenv (``make sdk-venvs``) as a subprocess against a real
harken server on loopback and reports every event it saw; the SDK must never emit an ``Error``
for anything harken sent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import EA, GA, ServerThread

ROOT = Path(__file__).resolve().parent.parent
DRIVERS = Path(__file__).resolve().parent / "official"

pytestmark = [pytest.mark.loopback, pytest.mark.official]


def run_driver(venv: str, script: str, url: str, *args: str) -> dict[str, Any]:
    python = ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{venv} is missing: run `make sdk-venvs` (make test does)")
    proc = subprocess.run(
        [str(python), str(DRIVERS / script), url, *args],
        cwd=DRIVERS,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["stderr"] = proc.stderr
    return report


def failed_steps(report: dict[str, Any]) -> list[str]:
    return [name for name, ok in report["steps"].items() if not ok]


def test_sdk_481_sync_full_flow(server: ServerThread) -> None:
    report = run_driver(".venv-dg4", "ga_sync_flow.py", server.url(GA))
    assert failed_steps(report) == [], report
    assert report["errors"] == [], report["errors"]
    names = report["names"]
    for event in (
        "Open",
        "Welcome",
        "SettingsApplied",
        "ConversationText",
        "AgentStartedSpeaking",
        "AudioData",
        "AgentAudioDone",
        "FunctionCallRequest",
        "InjectionRefused",
        "Close",
    ):
        assert event in names, event
    assert report["audio"] > 10
    unhandled = " ".join(report["unhandled"])
    for kind in ("PromptUpdated", "SpeakUpdated", "History"):
        assert kind in unhandled
    assert "Exception" not in report["stderr"]


def test_sdk_481_async_flow_and_error_close(server: ServerThread) -> None:
    report = run_driver(".venv-dg4", "ga_async_flow.py", server.url(GA))
    assert failed_steps(report) == [], report
    # exactly one Error: the one we provoked with a second Settings, with harken's description
    assert len(report["errors"]) == 1, report["errors"]
    assert "already applied" in report["errors"][0]
    assert "FunctionCallRequest" in report["names"]


def test_sdk_3101_early_access_flow(server: ServerThread) -> None:
    report = run_driver(".venv-dg3", "ea_flow.py", server.url(EA))
    assert failed_steps(report) == [], report
    assert report["errors"] == [], report["errors"]
    assert report["audio"] > 0
    assert "Exception" not in report["stderr"]


def test_sdk_481_bare_settings_use_server_defaults(server: ServerThread) -> None:
    report = run_driver(".venv-dg4", "ga_bare_flow.py", server.url(GA))
    assert failed_steps(report) == [], report
    assert report["errors"] == []
    assert report["audio"] > 0
