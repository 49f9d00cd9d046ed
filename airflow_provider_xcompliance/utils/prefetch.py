"""A background thread that produces an iterator's items ahead of its consumer."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def read_ahead(items: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Produce ``items`` in a background thread, up to ``depth`` ahead of the consumer, so that
    reading, validating or decompressing the next block overlaps with sending or writing this
    one (socket I/O, file writes and inflating release the GIL). An error of the producer is raised
    in the consumer, at the item where it happened; closing the consumer stops the producer."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as exc:  # handed over to the consumer, which raises it
            offer("error", exc)
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    producer = threading.Thread(target=produce, name="x-compliance-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()
