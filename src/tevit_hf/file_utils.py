"""Atomic file and folder writes: a crash or a full disk never leaves a half-written file or folder where a good one
was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same folder, then `os.replace` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            # fsync so a power loss after the rename cannot expose an empty file.
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """`json.dump(payload, indent=2)` to `path`, atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2))


@contextlib.contextmanager
def staged_directory(destination: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling (the yielded path) and move it to `destination` when the block ends
    without error; on an error the staging folder is removed and `destination` is untouched.

    Raises:
        FileExistsError: `destination` exists and is not an empty folder, and `overwrite` is False (checked before
            the block runs, so no work is wasted, and again before the move).
    """
    destination = Path(destination)

    def refuse_existing() -> None:
        if destination.exists() and not overwrite and (not destination.is_dir() or any(destination.iterdir())):
            raise FileExistsError(f"{destination} exists and is not empty; pass --overwrite to replace it.")

    refuse_existing()
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp creates 0700; the final folder should look like a mkdir one
    try:
        yield staging
        refuse_existing()
        if destination.exists():
            backup = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            os.replace(destination, backup)
            os.replace(staging, destination)
            shutil.rmtree(backup)
        else:
            os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
