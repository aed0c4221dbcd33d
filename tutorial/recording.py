"""What a local service received, and the events on the way there, readable from any thread."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from tutorial.waiting import wait_until

Item = TypeVar("Item")


class Recorder(Generic[Item]):
    """Keeps the items a service received and a log of named events (``held``, ``answered``...)."""

    def __init__(self, description: str) -> None:
        self.description = description  # e.g. "the SMTP server": used in timeout messages
        self.received: list[Item] = []
        self.events: list[str] = []
        self._lock = threading.Lock()

    def _note(self, event: str) -> None:
        with self._lock:
            self.events.append(event)

    def _keep(self, item: Item, event: str) -> None:
        with self._lock:
            self.received.append(item)
            self.events.append(event)

    def clear(self) -> None:
        """Forget what was received and noted so far (a service shared by several tests)."""
        with self._lock:
            self.received.clear()
            self.events.clear()

    def count(self, event: str) -> int:
        with self._lock:
            return self.events.count(event)

    def wait_for_event(self, event: str, count: int = 1, timeout: float = 10) -> None:
        """Wait until ``event`` has happened ``count`` times."""
        wait_until(
            lambda: self.count(event) >= count,
            timeout=timeout,
            what=f"{self.description} to see {event!r} {count} time(s)",
            seen=lambda: list(self.events),
        )

    def _wait_for_items(self, count: int, timeout: float, what: str) -> list[Item]:
        wait_until(
            lambda: len(self.received) >= count,
            timeout=timeout,
            what=f"{count} {what} at {self.description}",
            seen=lambda: list(self.events),
        )
        with self._lock:
            return list(self.received)
