"""The ``harken`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harken import cli

ENV = {k: v for k, v in os.environ.items() if not k.startswith("HARKEN_")}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harken", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, **(env or {})},
    )


def test_parser_serve_flags() -> None:
    args = cli.build_parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "9", "--providers", "testing", "--strict"]
    )
    config = cli.config_from_args(args, {})
    assert (config.host, config.port, config.providers, config.strict) == (
        "0.0.0.0",
        9,
        "testing",
        True,
    )


def test_flags_beat_env_and_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("port = 1\nlog_level = 'debug'\n")
    args = cli.build_parser().parse_args(["serve", "--config", str(path), "--port", "3"])
    config = cli.config_from_args(args, {"HARKEN_PORT": "2", "HARKEN_LOG_LEVEL": "warning"})
    assert config.port == 3 and config.log_level == "warning"


def test_no_command_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


def test_config_error_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "configuration error" in capsys.readouterr().err


def test_env_config_error_exits_2() -> None:
    result = run("serve", env={"HARKEN_PORT": "eighty"})
    assert result.returncode == 2
    assert "HARKEN_PORT" in result.stderr or "port" in result.stderr


def test_python_m_harken_help() -> None:
    result = run("--help")
    assert result.returncode == 0 and "serve" in result.stdout
    result = run("serve", "--help")
    assert result.returncode == 0 and "--providers" in result.stdout


def test_embedded_fails_loudly_without_models(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    result = run(
        "serve", "--port", "0", "--providers", "embedded", env={"HARKEN_MODEL_DIR": str(empty)}
    )
    assert result.returncode == 1
    assert "is not assembled" in result.stderr and "make install" in result.stderr
    assert "TESTING PROVIDERS" not in result.stderr  # never a silent fallback
    assert "Traceback" not in result.stderr


def test_models_lists_what_is_installed(tmp_path: Path) -> None:
    listed = run("models", "--dir", str(tmp_path))
    assert listed.returncode == 1  # nothing assembled in an empty directory
    for model_id in ("silero-vad", "whisper-base", "qwen2.5-coder-0.5b", "piper-joe", "espeak-ng"):
        assert model_id in listed.stdout
    assert "MISSING" in listed.stdout and "GPL-3.0-or-later" in listed.stdout
    assert "make install" in listed.stderr


def test_port_in_use_exits_1() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run("serve", "--providers", "testing", "--port", str(busy.getsockname()[1]))
    assert result.returncode == 1 and "cannot listen" in result.stderr
