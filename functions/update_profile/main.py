"""Cloud Function (gen2) entry point: apply one verdict to its sender's profile.

Triggered by the verdict topic. Exactly-once in effect: each message id is
recorded in the sender's row in the same atomic write as the counters.
"""

from __future__ import annotations

import functions_framework

from mailscore.instance import PerInstance
from mailscore.updater import Updater

updater = PerInstance(Updater.from_settings)


@functions_framework.cloud_event
def update_profile(event) -> None:
    """Pub/Sub-triggered: profile updated (or duplicate ignored); Bigtable errors raise."""
    updater.get().handle_event(event)
