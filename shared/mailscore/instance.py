"""What a Cloud Function instance loads once: built at start, shared by every request thread."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from mailscore import logs
from mailscore.settings import Settings

T = TypeVar("T")


class PerInstance(Generic[T]):
    """Builds ``factory(Settings.from_env())`` once, thread-safely, and hands it out.

    It is built when the function module is imported, as Cloud Functions
    recommends, so the first message does not pay for it and a broken model
    or setting fails the instance loudly; ``MAILSCORE_LAZY_INIT=1`` defers it
    to the first message instead.
    """

    def __init__(self, factory: Callable[[Settings], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._lock = threading.Lock()
        if os.environ.get("MAILSCORE_LAZY_INIT", "") != "1":
            self.get()

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    settings = Settings.from_env()
                    logs.configure(settings.log_level)
                    self._value = self._factory(settings)
        return self._value
