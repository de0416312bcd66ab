"""Cloud Function (gen2) entry point: score one email from a Pub/Sub message.

Thin on purpose: the logic lives in the shared ``mailscore`` package. The
model, the Bigtable and Pub/Sub clients and the settings load once per
instance and are reused by every request thread.
"""

from __future__ import annotations

import functions_framework

from mailscore.instance import PerInstance
from mailscore.worker import Worker

worker = PerInstance(Worker.from_settings)


@functions_framework.cloud_event
def score_email(event) -> None:
    """Pub/Sub-triggered: verdict or dead-letter published; transient errors raise."""
    worker.get().handle_event(event)
