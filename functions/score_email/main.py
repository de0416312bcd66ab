"""Cloud Function (gen2) entry point: score one email from a Pub/Sub message.

Thin on purpose: the logic lives in the shared ``mailscore`` package. The
model, the Bigtable and Pub/Sub clients and the settings load once per
instance, on the first message, and are reused by every request thread.
"""

from __future__ import annotations

import os
import threading

import functions_framework

from mailscore import logs
from mailscore.settings import Settings
from mailscore.worker import Worker

_worker: Worker | None = None
_lock = threading.Lock()


def get_worker() -> Worker:
    global _worker
    if _worker is None:
        with _lock:
            if _worker is None:
                settings = Settings.from_env()
                logs.configure(settings.log_level)
                _worker = Worker.from_settings(settings)
    return _worker


# Load at instance start, as Cloud Functions recommends, so the first message
# does not pay for it; a broken model or setting fails the instance loudly.
if os.environ.get("MAILSCORE_LAZY_INIT", "") != "1":
    get_worker()


@functions_framework.cloud_event
def score_email(event) -> None:
    """Pub/Sub-triggered: verdict or dead-letter published; transient errors raise."""
    get_worker().handle_event(event)
