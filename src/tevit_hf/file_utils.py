"""Atomic file and folder writes: a crash or a full disk never leaves a half-written file or folder where a good one
was."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import OutputExistsError


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: there is no getter)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def is_atomic_draft(path: Path, of: Path) -> bool:
    """Whether `path` is the temporary file an `atomic_text_stream` to `of` writes before it publishes."""
    return path.parent == of.parent and path.name.startswith(f".{of.name}.") and path.name.endswith(".tmp")


@contextlib.contextmanager
def atomic_text_stream(path: str | os.PathLike, exclusive: bool = False) -> Iterator[TextIO]:
    """A text stream to a temporary file in `path`'s folder, moved into place (`os.replace`) when the block ends
    without error and removed otherwise: readers see the old file or the whole new one, never a part.

    `exclusive`: publish with `os.link` instead, which raises `FileExistsError` when `path` exists, so of several
    processes creating the same file at once exactly one succeeds and the file is never replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # is_atomic_draft
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yield stream
            stream.flush()
            # fsync so a power loss after the rename cannot expose an empty file.
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; files follow the umask (0644 usually)
        if exclusive:
            os.link(temporary, path)
            os.remove(temporary)
        else:
            os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, OSError) and error.filename is None:  # a failed write() names no file; name ours
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def write_text_atomic(path: str | os.PathLike, text: str, exclusive: bool = False) -> Path:
    """Write `text` to `path` atomically (`atomic_text_stream`)."""
    with atomic_text_stream(path, exclusive=exclusive) as stream:
        stream.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any, exclusive: bool = False) -> Path:
    """`json.dump(payload, indent=2)` to `path`, atomically (`exclusive`: see `atomic_text_stream`)."""
    return write_text_atomic(path, json.dumps(payload, indent=2), exclusive=exclusive)


@contextlib.contextmanager
def staged_directory(destination: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling (the yielded path) and move it to `destination` as one unit when the
    block ends without error; on an error the staging folder is removed and `destination` is untouched. Two
    concurrent writers never mix their files: each builds its own folder, and the move refuses (or, with
    `overwrite`, replaces whole) what the other finished first. Staging folders left by killed runs are removed.

    Raises:
        OutputExistsError: `destination` exists and is not an empty folder, and `overwrite` is False (checked before
            the block runs, so no work is wasted, and again before the move).
    """
    destination = Path(destination)
    taken = f"{destination} already holds earlier work; pass --overwrite to replace it, or choose another folder."

    def refuse_existing() -> None:
        if destination.exists() and not overwrite and (not destination.is_dir() or any(destination.iterdir())):
            raise OutputExistsError(taken)

    refuse_existing()
    destination.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(destination)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-{os.getpid()}-", dir=destination.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp creates 0700; the final folder should look like a mkdir one
    try:
        yield staging
        refuse_existing()
        if destination.exists():
            backup = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            os.replace(destination, backup)
            os.replace(staging, destination)
            shutil.rmtree(backup)
        else:
            try:
                os.replace(staging, destination)
            except OSError as error:
                # Another run published its folder between our check and our move.
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise OutputExistsError(taken) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(destination: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """`staged_directory` for one file: the block writes the yielded temporary path (same folder, same suffix), which
    replaces `destination` when the block ends without error; on an error it is removed and `destination` stays.

    Raises:
        OutputExistsError: `destination` exists and `overwrite` is False (checked before the block and before the move).
    """
    destination = Path(destination)

    def refuse_existing() -> None:
        if destination.exists() and not overwrite:
            raise OutputExistsError(
                f"{destination} already exists; pass --overwrite to replace it, or choose another path."
            )

    refuse_existing()
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.stem}.", suffix=destination.suffix
    )
    os.close(handle)
    try:
        yield Path(temporary)
        refuse_existing()
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _remove_stale_staging(destination: Path) -> None:
    """Remove staging folders of `destination` whose process no longer runs (a killed or crashed earlier run)."""
    for path in destination.parent.glob(f".{destination.name}.tmp-*-*"):
        pid_text = path.name[len(f".{destination.name}.tmp-") :].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
