"""mailscore: score email for threats on Pub/Sub, Bigtable and XGBoost."""

import os
import sys

# MAILSCORE_PURE_PYTHON=1 runs the pure-Python twins of the compiled module
# (mailscore/_native.pyx) even where it is built: same results, slower. The
# tests use it to compare the two; it is also a switch for debugging.
if os.environ.get("MAILSCORE_PURE_PYTHON", "") not in ("", "0"):
    sys.modules["mailscore._native"] = None  # makes `import mailscore._native` raise ImportError
