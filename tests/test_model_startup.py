"""Start-up of the embedded stack: every model is sha256-checked; a broken one stops the server
with a clear message (not a hang, not a crash mid-call)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harken.engines import assemble, catalog

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def serve(model_dir: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARKEN_")}
    env["HARKEN_MODEL_DIR"] = str(model_dir)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "harken", "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return result, time.monotonic() - started


def mirror_with_corrupt_file(tmp_path: Path, model_id: str, name: str) -> Path:
    """A model dir whose models link to the real ones, except one corrupted file."""
    for spec in catalog.CATALOG.values():
        if spec.id != model_id and (MODELS / spec.id).exists():
            (tmp_path / spec.id).symlink_to(MODELS / spec.id, target_is_directory=True)
    target = tmp_path / model_id
    shutil.copytree(MODELS / model_id, target)
    data = bytearray((target / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    (target / name).write_bytes(bytes(data))
    (target / assemble.STAMP_NAME).unlink(missing_ok=True)
    return tmp_path


def test_default_models_verify() -> None:
    for model_id in catalog.INSTALL_DEFAULT:
        path = assemble.verify(model_id, MODELS, full=True)
        assert path.exists()


def test_corrupted_model_stops_startup_with_a_clear_error(tmp_path: Path) -> None:
    model_dir = mirror_with_corrupt_file(tmp_path, "silero-vad", "silero_vad.onnx")
    result, took = serve(model_dir)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr and "silero_vad.onnx" in result.stderr
    assert "Traceback" not in result.stderr
    assert took < 60


def test_missing_model_stops_startup_with_a_clear_error(tmp_path: Path) -> None:
    for spec in catalog.CATALOG.values():
        if spec.id != "piper-joe" and (MODELS / spec.id).exists():
            (tmp_path / spec.id).symlink_to(MODELS / spec.id, target_is_directory=True)
    result, _ = serve(tmp_path)
    assert result.returncode == 1
    assert "piper-joe" in result.stderr and "make install" in result.stderr
    assert "Traceback" not in result.stderr
