"""`_threads.prefetch`: a bounded background iterator that starts at once."""

import threading
import time

import pytest

from mvrt.runtime._threads import prefetch


def _bounded_wait(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_the_producer_starts_before_the_first_next_and_stays_depth_ahead():
    made = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert _bounded_wait(lambda: len(made) >= 3)  # 2 queued + 1 waiting to be put, before any next()
    time.sleep(0.2)
    assert len(made) == 3
    assert list(it) == list(range(10))


def test_errors_reach_the_consumer_and_close_stops_the_producer():
    def failing():
        yield 1
        raise ValueError("broken input")

    it = prefetch(failing())
    assert next(it) == 1
    with pytest.raises(ValueError, match="broken input"):
        next(it)

    stopped = threading.Event()

    def endless():
        try:
            while True:
                yield 0
        finally:
            stopped.set()

    it = prefetch(endless(), depth=1)
    assert next(it) == 0
    it.close()
    with pytest.raises(StopIteration):
        next(it)
    assert _bounded_wait(stopped.is_set)
