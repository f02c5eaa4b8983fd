"""An exclusive lock on a dataset folder, so two preparations of one cache never interleave.

``fcntl.flock`` on ``<folder>/.lock``: the kernel drops the lock when its holder exits,
killed or not, so a crashed preparation never leaves a stale lock behind. A second process
waits (printing one line saying whom it waits for) and then finds the finished build.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path, quiet: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) for the ``with`` block.

    Args:
        folder: the dataset folder.
        quiet: do not announce a wait.

    Yields:
        The lock file's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not quiet:
                print(f"kflow: {folder} is being prepared by {holder}; waiting for it", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
