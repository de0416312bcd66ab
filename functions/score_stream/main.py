"""Cloud Run / GKE entry point: the micro-batched scoring worker.

Same scoring core and settings (``MAILSCORE_*``) as ``functions/score_email``;
pulls ``MAILSCORE_BATCH_SUBSCRIPTION`` instead of receiving pushes. Runs
``MAILSCORE_BATCH_PROCESSES`` worker processes (default 1; one per core
helps when the pulls and the scoring outgrow one interpreter) and drains
in-flight work on SIGTERM before exiting, as Cloud Run asks.
"""

from __future__ import annotations

import os
import sys

from mailscore.cli import main

if __name__ == "__main__":
    processes = os.environ.get("MAILSCORE_BATCH_PROCESSES", "1")
    sys.exit(main(["batch-worker", "--processes", processes]))
