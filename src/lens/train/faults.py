"""What the engine does about faults no retry can fix: a stop request from the scheduler, a full disk,
a run directory it may not write.

- SIGTERM (what SLURM, Kubernetes and torchrun send before they kill) only sets a flag; the loop
  finishes the step, saves a checkpoint and returns, so a preempted job loses nothing. A second
  SIGTERM kills at once, as usual.
- A full disk (ENOSPC, EDQUOT) or a read-only / forbidden run directory becomes a LensError that
  says what to do, instead of a traceback from deep inside DCP or logging.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from lens.errors import LensError
from lens.train.checkpoint import root_error

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


class StopSignal:
    """Within `with StopSignal() as stop:`, SIGTERM sets `stop.requested` instead of killing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGTERM, self._previous)  # a second SIGTERM acts as it did before

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # only the main thread may install one
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *_) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind `err`, looking inside DCP's CheckpointException and `raise ... from`."""
    seen = 0
    while err is not None and seen < 8:
        err = root_error(err)
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _inside(filename, folder: Path) -> bool:
    if not filename:
        return True  # errors without a file name come from writes into the run (DCP, logging)
    try:
        return Path(filename).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def disk_message(err: BaseException, run_dir: Path) -> str | None:
    """A one-line LensError message for a full disk or an unwritable run dir; None for anything else."""
    os_err = _os_error(err)
    if os_err is None:
        return None
    where = os_err.filename or run_dir
    if os_err.errno in _FULL:
        return (
            f"no space left writing {where} ({os_err.strerror}); free space on that disk or lower "
            "checkpoint.keep, then continue with --resume (or pass a --run-dir on another disk)"
        )
    if os_err.errno in _READ_ONLY and _inside(os_err.filename, run_dir):
        return (
            f"cannot write {where} ({os_err.strerror}); make {run_dir} writable or pass a writable --run-dir"
        )
    return None


@contextlib.contextmanager
def disk_errors(run_dir: Path) -> Iterator[None]:
    """Turn a full disk or an unwritable run dir into a LensError; other errors pass unchanged."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit, LensError):
        raise
    except BaseException as err:  # DCP raises CheckpointException, a BaseException
        message = disk_message(err, run_dir)
        if message is None:
            raise
        raise LensError(message) from err
