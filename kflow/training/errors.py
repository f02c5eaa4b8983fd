"""Errors raised by the training utilities, each carrying one clear line for the user."""


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any work starts."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or written."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint written for another model, configuration or kflow version."""


class NonFiniteLossError(FloatingPointError):
    """The loss (or gradient norm) became NaN/inf; the last good checkpoint was kept."""

    def __init__(self, message: str, step: int, checkpoint_path: str | None = None):
        super().__init__(message)
        self.step = step
        self.checkpoint_path = checkpoint_path


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM/Ctrl-C after writing a checkpoint; rerun with resume=true."""

    def __init__(self, message: str, step: int, checkpoint_path: str | None = None, signal_name: str = "SIGTERM"):
        super().__init__(message)
        self.step = step
        self.checkpoint_path = checkpoint_path
        self.signal_name = signal_name
