"""Fetch the real recorded human speech the model tests use, into ``<repo>/var/testdata/``.

The recordings (with transcripts) ship in the pocketsphinx 5.1.1 *sdist* on PyPI: five
LibriVox sentences (``librivox/*.wav`` + ``.txt``), ``goforward.raw`` ("go forward ten meters",
16 kHz s16le) and five ``cards/*.wav`` with ``cards/cards.transcription``. This script downloads
that sdist with pip (no install), checks its sha256, and extracts only those files (with
:mod:`tarfile`, no shell) into ``var/testdata/pocketsphinx-5.1.1/``. It is idempotent: when
the files are already there it does nothing, and a verified sdist is never downloaded twice.
Extraction goes to a temporary directory renamed into place, so an interrupted run never leaves
a half-filled data directory under the final name. Run from anywhere::

    python scripts/fetch_testdata.py [--dest DIR] [--sdist FILE]

``--sdist`` uses a local copy of the sdist instead of asking the package index.

Only the sdist itself is built from source (``--no-binary pocketsphinx``): pip still prepares
its metadata, and ``--no-binary :all:`` would also build its build dependencies (cmake, ninja)
from source, which takes minutes instead of seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
DEFAULT_DEST: Final = REPO / "var" / "testdata"
PACKAGE: Final = "pocketsphinx"
VERSION: Final = "5.1.1"
SDIST: Final = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256: Final = "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"
SDIST_SIZE: Final = 34_158_862
DATA_DIR: Final = f"{PACKAGE}-{VERSION}"
"""The extracted files live in ``<dest>/<DATA_DIR>/``, laid out as under ``test/data/``."""
PREFIX: Final = f"{PACKAGE}-{VERSION}/test/data/"
_LIBRIVOX: Final = tuple(
    f"librivox/sense_and_sensibility_01_austen_64kb-{n}.{ext}"
    for n in ("0870", "0880", "0890", "0920", "0930")
    for ext in ("wav", "txt")
)
FILES: Final[tuple[str, ...]] = (
    *_LIBRIVOX,
    "goforward.raw",
    *(f"cards/00{n}.wav" for n in range(1, 6)),
    "cards/cards.transcription",
)
"""Every extracted file, relative to the data directory (and to ``test/data/`` in the sdist)."""
_STAMP: Final = ".complete"


class FetchError(Exception):
    """The test data could not be fetched; the message says why and what to do."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(data_dir: Path) -> bool:
    """True when ``data_dir`` holds every file of a finished extraction."""
    stamp = data_dir / _STAMP
    if not stamp.is_file() or stamp.read_text().strip() != SDIST_SHA256:
        return False
    return all((data_dir / name).is_file() for name in FILES)


def _sdist_ok(path: Path) -> bool:
    return (
        path.is_file() and path.stat().st_size == SDIST_SIZE and file_sha256(path) == SDIST_SHA256
    )


def download(dest: Path) -> Path:
    """Download the sdist into ``dest`` with pip (reusing a verified copy) and verify it."""
    sdist = dest / SDIST
    if _sdist_ok(sdist):
        return sdist
    sdist.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        PACKAGE,
        "--dest",
        str(dest),
        f"{PACKAGE}=={VERSION}",
    ]
    print(f"downloading {SDIST} with pip ...", flush=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise FetchError(
            f"pip download of {PACKAGE}=={VERSION} failed (exit {result.returncode}):\n{tail}\n"
            f"check the package index, or pass --sdist FILE with a local copy of {SDIST}"
        )
    return verify_sdist(sdist)


def verify_sdist(sdist: Path) -> Path:
    if not sdist.is_file():
        raise FetchError(f"{sdist} does not exist")
    actual = file_sha256(sdist)
    if actual != SDIST_SHA256:
        raise FetchError(
            f"sha256 mismatch for {sdist}: expected {SDIST_SHA256}, got {actual}; delete it and "
            "run this script again"
        )
    return sdist


def extract(sdist: Path, data_dir: Path) -> None:
    """Extract :data:`FILES` from ``sdist`` into ``data_dir`` (replaced as a whole)."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.", dir=data_dir.parent))
    try:
        wanted = {PREFIX + name: name for name in FILES}
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:
                name = wanted.pop(member.name, None)
                if name is None:
                    continue
                if not member.isfile():
                    raise FetchError(f"{member.name} in {sdist.name} is not a regular file")
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise FetchError(f"cannot read {member.name} from {sdist.name}")
                target = tmp / name  # our own relative name: no path from the archive is used
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
        if wanted:
            raise FetchError(f"{sdist.name} lacks {', '.join(sorted(wanted.values()))}")
        (tmp / _STAMP).write_text(SDIST_SHA256 + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private
        if data_dir.exists():
            shutil.rmtree(data_dir)
        os.replace(tmp, data_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def fetch(dest: Path = DEFAULT_DEST, sdist: Path | None = None) -> Path:
    """Make sure the test data is in ``dest``; return the data directory."""
    data_dir = dest / DATA_DIR
    if is_complete(data_dir):
        return data_dir
    dest.mkdir(parents=True, exist_ok=True)
    archive = verify_sdist(sdist) if sdist is not None else download(dest)
    extract(archive, data_dir)
    return data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="default: %(default)s")
    parser.add_argument("--sdist", type=Path, help=f"a local {SDIST} instead of downloading")
    args = parser.parse_args(argv)
    data_dir = args.dest / DATA_DIR
    already = is_complete(data_dir)
    try:
        data_dir = fetch(args.dest, args.sdist)
    except (FetchError, OSError, tarfile.TarError) as exc:
        print(f"fetch_testdata: {exc}", file=sys.stderr)
        return 1
    verb = "already in" if already else "extracted to"
    print(f"test data {verb} {data_dir} ({len(FILES)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
