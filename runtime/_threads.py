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


def prefetch(iterable: Iterable[T], depth: int = 2, name: str = "mvrt-prefetch") -> Iterator[T]:
    """Iterate `iterable` in a daemon thread, at most `depth` items ahead.

    Exceptions raised by the iterable are re-raised in the consumer; closing the returned
    generator stops the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                if not put_unless_stopped(q, item, stop):
                    return
            put_unless_stopped(q, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put_unless_stopped(q, _Raised(exc), stop)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
