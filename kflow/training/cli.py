"""One line and an exit code for the failures a training script expects (for scripts' main)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import CheckpointError, ConfigError, NonFiniteLossError, TrainingInterrupted

EXIT_CONFIG = 2
EXIT_NON_FINITE = 3


@contextmanager
def exit_on_training_error(prog: str) -> Iterator[None]:
    """Print `prog: error: <message>` (rank 0 only) and exit instead of a traceback.

    Exit codes: 2 for a bad config or an unusable checkpoint, 3 for a NaN/inf loss, and
    128 + signal number after a SIGTERM/Ctrl-C stop (143 / 130), as shells report signals.

    Example:
        with exit_on_training_error("train_assembly"):
            run(cfg)
    """
    try:
        yield
    except (ConfigError, CheckpointError) as error:
        _fail(prog, error, EXIT_CONFIG)
    except NonFiniteLossError as error:
        _fail(prog, error, EXIT_NON_FINITE)
    except TrainingInterrupted as error:
        _fail(prog, error, 128 + getattr(signal, error.signal_name, signal.SIGTERM).value)


def _fail(prog: str, error: Exception, code: int) -> None:
    if os.environ.get("RANK", "0") == "0":
        print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(code)
