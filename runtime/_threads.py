"""Small threading helpers: bounded prefetch of an iterator in a background thread."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def put_unless_stopped(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` into a bounded queue, giving up (False) once `stop` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(iterable: Iterable[T], depth: int = 2, name: str = "mvrt-prefetch") -> "Prefetched[T]":
    """Iterate `iterable` in a daemon thread, at most `depth` items ahead, starting now.

    The thread starts at once, not at the first `next` (a live stream's video must be decoded
    while its first window's audio arrives). Exceptions raised by the iterable are re-raised in
    the consumer; `close()` stops the producer.
    """
    return Prefetched(iterable, depth, name)


class Prefetched(Iterator[T]):
    """The consumer's side of `prefetch`: an iterator with `close()`."""

    def __init__(self, iterable: Iterable[T], depth: int, name: str):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._produce, args=(iterable,), name=name, daemon=True)
        self._thread.start()

    def _produce(self, iterable: Iterable[T]) -> None:
        try:
            for item in iterable:
                if not put_unless_stopped(self._queue, item, self._stop):
                    return
            put_unless_stopped(self._queue, _DONE, self._stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put_unless_stopped(self._queue, _Raised(exc), self._stop)

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Raised):
            self.close()
            raise item.exc
        return item

    def close(self) -> None:
        self._done = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __del__(self) -> None:
        self._stop.set()
