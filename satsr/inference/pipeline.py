"""Overlap reading, device work and writing: a reader thread and a writer thread with
bounded queues around the caller's (device) loop.

GDAL releases the GIL while it decodes and compresses, and torch while it computes, so on a
CPU the three stages share the cores and on a GPU the host work hides behind the device's.
Each queue holds at most `depth` items, so memory stays bounded. An exception in either
thread stops the run and is raised again in the caller's thread (`Prefetch.__next__`,
`Sink.put`, `Sink.close`). A GDAL dataset is not safe to share between threads: the reader
and the writer each use their own handles.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END = object()


class Prefetch(Generic[R]):
    """Iterate over `fn(item)` for each item, computed up to `depth` items ahead in a thread."""

    def __init__(self, fn: Callable[[Any], R], items: Iterable[Any], depth: int = 2) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn, items), daemon=True,
                                        name="satsr-reader")
        self._thread.start()

    def _run(self, fn: Callable[[Any], R], items: Iterable[Any]) -> None:
        try:
            for item in items:
                if self._stop.is_set():
                    return
                self._put((True, fn(item)))
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer)
            self._put((False, exc))
            return
        self._put((True, _END))

    def _put(self, value: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[R]:
        return self

    def __next__(self) -> R:
        ok, value = self._q.get()
        if not ok:
            self.close()
            raise value
        if value is _END:
            self.close()
            raise StopIteration
        return value

    def close(self) -> None:
        """Stop reading ahead (idempotent)."""
        self._stop.set()
        self._thread.join()


class Sink(Generic[T]):
    """Hand items to `fn` in a writer thread, in order, at most `depth` waiting."""

    def __init__(self, fn: Callable[[T], None], depth: int = 2) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True,
                                        name="satsr-writer")
        self._thread.start()

    def _run(self, fn: Callable[[T], None]) -> None:
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._error is None:
                try:
                    fn(item)
                except BaseException as exc:  # noqa: BLE001  (raised again by put/close)
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        self._check()
        self._q.put(item)

    def close(self) -> None:
        """Wait for every item to be written; raise the writer's error, if any."""
        self._q.put(_END)
        self._thread.join()
        self._check()

    def abandon(self) -> None:
        """Stop without raising (the caller is already failing): drop what is queued."""
        self._error = self._error or RuntimeError("abandoned")  # the writer skips the rest
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._q.put(_END)
        self._thread.join()
