"""Run one task per entry so that no entry can stop, hang or crash a batch.

:func:`run_guarded` calls ``task(index)`` for every index and yields one :class:`Outcome`
each: the task's value, a rejection (an ``expected`` exception carrying ``reason`` and
``detail``), ``error`` (any other exception, with its traceback) or ``timeout``.

With a time limit, tasks run in forked worker processes (one per ``workers``), which are
reused from entry to entry; a worker that passes its deadline is killed (SIGKILL, so even a
parse stuck in C code stops) and replaced, and a worker that dies (segfault, out-of-memory
kill) becomes an ``error`` outcome. Results travel back pickled, so they arrive unchanged.
Without a time limit the tasks run in this process, one after another.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any


@dataclass
class Outcome:
    """What happened to one task.

    Attributes:
        index: the task's index.
        value: the task's return value (None unless ``reason`` is None).
        reason: None when the task succeeded, else a rejection reason, ``error`` or ``timeout``.
        detail: one readable line (for ``error``: the exception type and its first line).
        traceback: the full traceback of an ``error``, else None.
        seconds: wall time the task took (up to the limit for a ``timeout``).
    """

    index: int
    value: Any = None
    reason: str | None = None
    detail: str = ""
    traceback: str | None = None
    seconds: float = 0.0


def first_line(error: BaseException) -> str:
    """``"<type>: <first line of the message>"`` of an exception."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def call_guarded(task: Callable[[int], Any], index: int, expected: tuple[type[BaseException], ...]) -> Outcome:
    """Run one task here; an ``expected`` exception must carry ``reason`` and ``detail``."""
    started = time.perf_counter()
    try:
        value = task(index)
    except expected as rejection:
        return Outcome(index, None, rejection.reason, rejection.detail, None, time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - one entry's failure must not stop the batch
        return Outcome(index, None, "error", first_line(error), traceback.format_exc(), time.perf_counter() - started)
    return Outcome(index, value, seconds=time.perf_counter() - started)


def _serve(task: Callable[[int], Any], expected: tuple, connection) -> None:
    """Worker loop: receive an index, send back the pickled outcome; None stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            index = connection.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if index is None:
            return
        try:
            outcome = call_guarded(task, index, expected)
            payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # noqa: BLE001 - e.g. an unpicklable value
            payload = pickle.dumps(Outcome(index, None, "error", first_line(error), traceback.format_exc()))
        connection.send_bytes(payload)


class _Worker:
    """One forked worker process and its end of the pipe."""

    def __init__(self, context, task: Callable[[int], Any], expected: tuple):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(task, expected, child), daemon=True)
        self.process.start()
        child.close()
        self.index: int | None = None
        self.started = 0.0

    def submit(self, index: int) -> None:
        self.index, self.started = index, time.perf_counter()
        self.connection.send(index)

    def receive(self) -> Outcome:
        try:
            return pickle.loads(self.connection.recv_bytes())
        except (EOFError, OSError):
            self.process.join(timeout=1)
            code = self.process.exitcode
            return Outcome(
                self.index,
                None,
                "error",
                f"WorkerDied: the worker process exited with code {code}",
                f"worker process for task {self.index} exited with code {code}\n",
                time.perf_counter() - self.started,
            )

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()

    def close(self) -> None:
        try:
            self.connection.send(None)
            self.process.join(timeout=5)
        except (BrokenPipeError, OSError):
            pass
        self.stop()


def fork_available() -> bool:
    """True where worker processes can be forked (Linux, macOS)."""
    return "fork" in multiprocessing.get_all_start_methods()


def run_guarded(
    task: Callable[[int], Any],
    count: int,
    time_limit: float | None = None,
    workers: int = 1,
    expected: tuple[type[BaseException], ...] = (),
) -> Iterator[Outcome]:
    """Run ``task(0) .. task(count - 1)``, yielding one outcome per task, never raising for a task.

    Args:
        task: called with an index; forked workers inherit it, so it needs no pickling.
        count: number of tasks.
        time_limit: seconds per task; None or <= 0 runs the tasks in this process without a limit.
        workers: worker processes (only with a time limit).
        expected: exception types that are rejections (with ``reason`` and ``detail`` attributes).

    Yields:
        Outcomes in completion order (index order with one worker or none).
    """
    if not time_limit or time_limit <= 0:
        for index in range(count):
            yield call_guarded(task, index, expected)
        return
    if not fork_available():
        raise RuntimeError("a per-entry time limit needs forked worker processes; set time_limit=0 on this platform")
    yield from _run_in_workers(task, count, float(time_limit), max(1, min(workers, count)), expected)


def _run_in_workers(task, count: int, time_limit: float, workers: int, expected: tuple) -> Iterator[Outcome]:
    context = multiprocessing.get_context("fork")
    todo = deque(range(count))
    idle = [_Worker(context, task, expected) for _ in range(workers)] if count else []
    busy: dict[Any, _Worker] = {}
    try:
        while todo or busy:
            while todo and idle:
                worker = idle.pop()
                worker.submit(todo.popleft())
                busy[worker.connection] = worker
            deadline = min(w.started for w in busy.values()) + time_limit
            for connection in wait(list(busy), timeout=max(0.0, deadline - time.perf_counter())):
                worker = busy.pop(connection)
                outcome = worker.receive()
                if not worker.alive():
                    worker.stop()
                    worker = _Worker(context, task, expected)
                idle.append(worker)
                yield outcome
            now = time.perf_counter()
            for connection, worker in list(busy.items()):
                if now - worker.started >= time_limit:
                    del busy[connection]
                    worker.stop()
                    idle.append(_Worker(context, task, expected))
                    yield Outcome(
                        worker.index,
                        None,
                        "timeout",
                        f"no result after {time_limit:g} s (worker killed)",
                        None,
                        now - worker.started,
                    )
    finally:
        for worker in idle + list(busy.values()):
            worker.close() if worker.alive() else worker.stop()
