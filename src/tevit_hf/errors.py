"""The error layer of every command: user errors become one clear line and an exit code, never a traceback.

A user error is what the user can fix: a missing or unreadable file, a bad option value, an inconsistent model
folder, an output folder that holds earlier work, a full disk. The project's own errors derive from `TeViTError`
(most also from `ValueError` or `OSError`, so library callers can catch them the usual way); the layer also treats
`OSError` and `ValueError` raised on the way as user errors, since a bad input is what raises them here. The message
names the file, field or frame at fault. `--debug` (or `TEVIT_HF_DEBUG=1`) re-raises with the full traceback.

Exit codes (documented in the README): 0 success, 1 user error, 2 bad command-line usage (argparse), 130 interrupted.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable


EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENVIRONMENT_VARIABLE = "TEVIT_HF_DEBUG"


class TeViTError(Exception):
    """Base of the project's user-facing errors: the message says what is wrong, where, and what to do."""


class OutputExistsError(TeViTError, FileExistsError):
    """An output folder already holds earlier work (pass --overwrite to replace it)."""


class DeviceUnavailableError(TeViTError, ValueError):
    """The requested torch device does not exist on this machine."""


USER_ERROR_TYPES: tuple[type[BaseException], ...] = (TeViTError, OSError, ValueError)


def debug_requested(debug_flag: bool = False) -> bool:
    return debug_flag or os.environ.get(DEBUG_ENVIRONMENT_VARIABLE, "").strip() not in ("", "0", "false", "False")


def describe_user_error(error: BaseException) -> str:
    """One line (two at most) for `error`: disk-full and OS errors name their file; other messages as written."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = f" while writing {error.filename}" if error.filename else ""
        return f"no space left on the device{where}: free some space and run again"
    if isinstance(error, OSError) and error.strerror and error.filename and not isinstance(error, TeViTError):
        return f"{error.strerror}: {error.filename}"
    message = str(error).strip() or type(error).__name__
    lines = message.splitlines()
    return "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else "")


def run_with_error_layer(program: str, function: Callable[[], int | None], debug: bool = False) -> int:
    """Run `function` (a command's body); user errors print `program: error: message` and return an exit code."""
    try:
        return int(function() or EXIT_OK)
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except USER_ERROR_TYPES as error:
        if debug_requested(debug):
            raise
        disk_full = is_disk_full(error)
        if disk_full:
            error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), _filename(error))
        hint = (
            ""
            if isinstance(error, TeViTError) or disk_full
            else f" (details: --debug or {DEBUG_ENVIRONMENT_VARIABLE}=1)"
        )
        print(f"{program}: error: {describe_user_error(error)}{hint}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except Exception as error:
        # Writers report a full disk in their own types: torch's zip writer as a RuntimeError, safetensors as a
        # SafetensorError; anything else is a bug and keeps its traceback.
        if not debug_requested(debug) and is_disk_full(error):
            print(f"{program}: error: {describe_user_error(OSError(errno.ENOSPC, '', None))}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


# How a full disk shows through the writers' own errors: OS and safetensors messages, and torch's zip writer
# (`torch.save`, Accelerate's `save_state`), which reports the short write only as "[enforce fail at
# inline_container.cc:...] . unexpected pos N vs M".
_DISK_FULL_MARKERS = ("No space left on device", "StorageFull", "file write failed", "unexpected pos")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) is a write cut short by a full disk."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if any(marker in str(error) for marker in _DISK_FULL_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False


def _filename(error: BaseException) -> str | None:
    while error is not None:
        if isinstance(error, OSError) and error.filename:
            return error.filename
        error = error.__cause__ or error.__context__
    return None


__all__ = [
    "DEBUG_ENVIRONMENT_VARIABLE",
    "DeviceUnavailableError",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_USER_ERROR",
    "OutputExistsError",
    "TeViTError",
    "USER_ERROR_TYPES",
    "is_disk_full",
    "describe_user_error",
    "run_with_error_layer",
]
