#!/usr/bin/env python3
"""Build each Cloud Function's source zip deterministically: ``make package``.

For every ``functions/<name>/`` holding a ``main.py``, writes
``<out>/<name>.zip`` with:

* the files of ``functions/<name>/`` (``main.py``, ``requirements.txt``, ...),
* the shared ``mailscore`` package copied beside them (``mailscore/...``),
* for the functions that score (``MODEL_FUNCTIONS``), the model directory as
  ``models/active/`` (``model.ubj`` + ``model_card.json``), checked against
  the SHA-256 its card records, so a broken model is never shipped.

The same inputs always give the same bytes: entries sorted, one fixed
timestamp and mode, no directory entries, no caches. Terraform names the
uploaded object after the zip's SHA-256, so only a real change redeploys.
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
SHARED_PACKAGE = ROOT / "shared" / "mailscore"
MODEL_FUNCTIONS = frozenset({"score_email"})
MODEL_FILES = ("model.ubj", "model_card.json")
MODEL_ARCDIR = "models/active"  # MAILSCORE_MODEL_DIR in infra/terraform/main.tf

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
FILE_MODE = 0o100644  # regular file, rw-r--r--
SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
# Built here, for this machine's Python: never shipped (the package is source, the
# same bytes from every machine). The function runs the pure-Python twins of
# mailscore/_native.pyx, which give the same results.
SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".c")


class PackageError(Exception):
    """A package cannot be built; the message says what to do."""


def _files_under(directory: Path, arcprefix: str) -> dict[str, Path]:
    """Archive name -> file, for every file under ``directory`` except caches."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for filename in filenames:
            if filename.endswith(SKIP_SUFFIXES) or filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            relative = path.relative_to(directory).as_posix()
            found[f"{arcprefix}{relative}"] = path
    return found


def _check_model(model_dir: Path) -> None:
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        raise PackageError(
            f"no model in {model_dir} (missing {', '.join(missing)}): "
            "run `make train`, or point MODEL_DIR at a directory holding model.ubj and model_card.json"
        )
    try:
        card = json.loads((model_dir / "model_card.json").read_text())
    except (OSError, ValueError) as exc:
        raise PackageError(f"{model_dir / 'model_card.json'} is not readable JSON: {exc}") from None
    digest = hashlib.sha256((model_dir / "model.ubj").read_bytes()).hexdigest()
    if card.get("sha256") != digest:
        raise PackageError(
            f"{model_dir / 'model.ubj'} does not match the sha256 in its card; "
            "the function would refuse to load it, so it is not packaged"
        )


def package_entries(name: str, model_dir: Path | None, functions_dir: Path = FUNCTIONS_DIR,
                    shared_package: Path = SHARED_PACKAGE) -> dict[str, Path]:
    """Every file of function ``name``'s package: archive name -> source file."""
    source = functions_dir / name
    if not (source / "main.py").is_file():
        raise PackageError(f"{source} has no main.py")
    if not (source / "requirements.txt").is_file():
        raise PackageError(f"{source} has no requirements.txt: Cloud Functions installs nothing without it")
    entries = _files_under(source, "")
    if any(arcname.split("/", 1)[0] in ("mailscore", "models") for arcname in entries):
        raise PackageError(f"{source} has its own mailscore/ or models/, which the package would overwrite")
    entries.update(_files_under(shared_package, "mailscore/"))
    if name in MODEL_FUNCTIONS:
        if model_dir is None:
            raise PackageError(f"{name} needs a model: pass --model-dir")
        _check_model(model_dir)
        for filename in MODEL_FILES:
            entries[f"{MODEL_ARCDIR}/{filename}"] = model_dir / filename
    return entries


def build_zip(entries: dict[str, Path]) -> bytes:
    """The zip of ``entries``, byte-for-byte the same for the same contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[arcname].read_bytes(), compresslevel=9)
    return buffer.getvalue()


def function_names(functions_dir: Path = FUNCTIONS_DIR) -> list[str]:
    return sorted(p.parent.name for p in functions_dir.glob("*/main.py"))


def write_package(name: str, out_dir: Path, model_dir: Path | None, **dirs: Path) -> tuple[Path, str]:
    """Build ``<out_dir>/<name>.zip``; returns its path and SHA-256.

    The file is replaced only when its bytes change, atomically.
    """
    data = build_zip(package_entries(name, model_dir, **dirs))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    if not target.is_file() or target.read_bytes() != data:
        partial = target.with_suffix(".zip.partial")
        partial.write_bytes(data)
        partial.replace(target)
    return target, hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="functions to package (default: every functions/*/main.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "package", help="output directory")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "active",
                        help="model packaged into the scoring function (default: models/active)")
    args = parser.parse_args(argv)
    names = args.names or function_names()
    if not names:
        print(f"package: no functions/*/main.py under {FUNCTIONS_DIR}", file=sys.stderr)
        return 1
    for name in names:
        try:
            path, digest = write_package(name, args.out, args.model_dir)
        except PackageError as exc:
            print(f"package: {name}: {exc}", file=sys.stderr)
            return 1
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"package: {shown}  sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
