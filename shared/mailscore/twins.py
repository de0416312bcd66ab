"""Where the scoring core's compiled twins come from: ``mailscore._native``, when it was built.

Each hot loop has a pure-Python twin beside the code that calls it, and a
compiled one in ``_native.pyx`` that ``setup.py`` builds where a C compiler
is. ``twin`` picks the compiled one when it is there (and
``MAILSCORE_PURE_PYTHON`` is not set, see ``mailscore/__init__.py``); both
give the same results, which ``tests/unit/test_native.py`` holds them to.
"""

from __future__ import annotations

from typing import Any

try:
    from mailscore import _native
except ImportError:  # not built where the package was installed, or switched off
    _native = None


def compiled() -> bool:
    """Whether the compiled twins run here (else the pure-Python ones)."""
    return _native is not None


def twin(name: str, python_twin: Any) -> Any:
    """``_native.<name>`` when the compiled twins are built, else ``python_twin``."""
    return python_twin if _native is None else getattr(_native, name)
