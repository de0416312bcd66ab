"""Cloud Function (gen2) entry point: apply one verdict to its sender's profile.

Triggered by the verdict topic. Exactly-once in effect: each message id is
recorded in the sender's row in the same atomic write as the counters.
"""

from __future__ import annotations

import os
import threading

import functions_framework

from mailscore import logs
from mailscore.settings import Settings
from mailscore.updater import Updater

_updater: Updater | None = None
_lock = threading.Lock()


def get_updater() -> Updater:
    global _updater
    if _updater is None:
        with _lock:
            if _updater is None:
                settings = Settings.from_env()
                logs.configure(settings.log_level)
                _updater = Updater.from_settings(settings)
    return _updater


if os.environ.get("MAILSCORE_LAZY_INIT", "") != "1":
    get_updater()


@functions_framework.cloud_event
def update_profile(event) -> None:
    """Pub/Sub-triggered: profile updated (or duplicate ignored); Bigtable errors raise."""
    get_updater().handle_event(event)
