"""One small per-process cache whose entries expire: for values read on a hot path that may be a few
seconds old (an API key found valid, a merchant's event routing). Plain Python, no Django.

Per process and not shared: whoever changes the underlying rows forgets the entry in its own process
(``pop``/``clear``), and the TTL bounds how long other processes keep the old value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """A dict of values that expire ``seconds`` after they were set; at most ``size`` entries (setting
    one more into a full cache empties it first: cheaper than tracking age, and a miss only costs the
    read it saves). ``clock`` gives the time in seconds (``time.monotonic``; tests assign another).

    ``get`` is one dict lookup and one comparison with the clock; ``None`` is never stored (it means
    "not cached"). Not locked: each call is atomic under the GIL, and callers that must keep several
    calls together hold their own lock."""

    __slots__ = ("seconds", "size", "clock", "_entries")

    def __init__(self, *, seconds: float, size: int, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def get(self, key: Hashable) -> V | None:
        """The value set for ``key`` less than ``seconds`` ago, else None."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock():
            return entry[1]
        return None

    def set(self, key: Hashable, value: V) -> None:
        entries = self._entries
        if len(entries) >= self.size:
            entries.clear()
        entries[key] = (self.clock() + self.seconds, value)

    def pop(self, key: Hashable) -> None:
        """Forget ``key`` (nothing happens when it is not cached)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: Hashable) -> bool:
        """Holds a value for ``key`` that has not expired."""
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self._entries)
