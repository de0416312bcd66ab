"""Builds the optional compiled twins in ``shared/mailscore/_native.pyx``.

Everything else is in pyproject.toml. Where no C compiler (or no Cython)
is available the build goes on without the extension: ``mailscore`` then
runs the pure-Python twins, which give the same results, more slowly.
"""

from setuptools import setup
from setuptools.command.build_ext import build_ext

NATIVE_SOURCE = "shared/mailscore/_native.pyx"


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the extension is a speed-up, not a requirement."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means: no extension
            self._skipped(exc)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._skipped(exc)

    @staticmethod
    def _skipped(exc: Exception) -> None:
        print(f"mailscore: compiled twins not built ({exc}); the pure-Python twins will run")


def _extensions() -> list:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("mailscore: Cython is not installed; the pure-Python twins will run")
        return []
    return cythonize([NATIVE_SOURCE], language_level=3, quiet=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
