"""A bounded cache of reference profiles, for workers that analyse window after window."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from monitor.analysis.profile import ReferenceProfile


class ProfileCache:
    """Profiles by key (say, model version id and spec version); the least recently used goes
    when more than ``max_profiles`` are held. Thread-safe; a profile is built outside the lock,
    so two threads missing the same key may both build it (the second result is kept)."""

    def __init__(self, max_profiles: int = 16) -> None:
        if max_profiles < 1:
            raise ValueError("max_profiles must be at least 1")
        self._max = max_profiles
        self._profiles: OrderedDict[Hashable, ReferenceProfile] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], ReferenceProfile]) -> ReferenceProfile:
        """The cached profile of ``key``, or ``build()``'s, then cached."""
        with self._lock:
            found = self._profiles.get(key)
            if found is not None:
                self._profiles.move_to_end(key)
                return found
        profile = build()
        with self._lock:
            self._profiles[key] = profile
            self._profiles.move_to_end(key)
            while len(self._profiles) > self._max:
                self._profiles.popitem(last=False)
        return profile

    def discard(self, key: Hashable) -> None:
        """Forget a profile (its reference data or spec changed)."""
        with self._lock:
            self._profiles.pop(key, None)

    def __len__(self) -> int:
        return len(self._profiles)
