"""`make package` (infra/package_functions.py) and the plan/deploy preflight.

The zips must be reproducible (same source, same bytes, so Terraform's
content-hash object names only change with the code or model), hold what
Cloud Functions needs, and refuse a model the function would refuse. The
preflight of `make plan`/`make deploy` must stop with a message, without
running terraform or touching the network, when credentials are missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "scripts" / "terraform.sh"


def _load_packager():
    spec = importlib.util.spec_from_file_location("package_functions", ROOT / "infra" / "package_functions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pkg = _load_packager()


@pytest.fixture
def tree(tmp_path):
    """A copy of functions/score_email, the shared package and a tiny fake model."""
    functions = tmp_path / "functions"
    shutil.copytree(ROOT / "functions" / "score_email", functions / "score_email",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shared = tmp_path / "shared" / "mailscore"
    shutil.copytree(ROOT / "shared" / "mailscore", shared, ignore=shutil.ignore_patterns("__pycache__"))
    (shared / "__pycache__").mkdir()
    (shared / "__pycache__" / "settings.cpython-311.pyc").write_bytes(b"cache")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.ubj").write_bytes(b"not really a booster")
    card = {"sha256": hashlib.sha256(b"not really a booster").hexdigest(), "model_version": "xgb-test"}
    (model / "model_card.json").write_text(json.dumps(card))
    return {"functions_dir": functions, "shared_package": shared, "model": model}


def _build(tree, name="score_email", out=None):
    dirs = {"functions_dir": tree["functions_dir"], "shared_package": tree["shared_package"]}
    return pkg.write_package(name, out or tree["model"].parent / "out", tree["model"], **dirs)


def test_same_source_gives_the_same_bytes_whatever_the_mtimes(tree, tmp_path):
    first, digest = _build(tree, out=tmp_path / "a")
    later = time.time() + 3600
    for path in tree["functions_dir"].rglob("*"):
        os.utime(path, (later, later))
    for path in tree["shared_package"].rglob("*"):
        os.utime(path, (later, later))
    second, again = _build(tree, out=tmp_path / "b")
    assert digest == again
    assert first.read_bytes() == second.read_bytes()
    assert hashlib.sha256(first.read_bytes()).hexdigest() == digest


def test_entries_are_sorted_timeless_and_complete(tree):
    path, _ = _build(tree)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {"main.py", "requirements.txt", "mailscore/settings.py", "mailscore/worker.py",
                "mailscore/py.typed", "models/active/model.ubj", "models/active/model_card.json"} <= set(names)
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", "/"))]
        assert {i.date_time for i in infos} == {pkg.FIXED_TIME}
        assert {i.external_attr >> 16 for i in infos} == {pkg.FILE_MODE}
        assert archive.read("mailscore/settings.py") == (ROOT / "shared" / "mailscore" / "settings.py").read_bytes()


def test_a_changed_file_changes_the_hash(tree):
    _, before = _build(tree)
    settings = tree["shared_package"] / "settings.py"
    settings.write_text(settings.read_text() + "\n# changed\n")
    _, after = _build(tree)
    assert before != after


def test_functions_without_a_model_get_none(tree):
    shutil.copytree(tree["functions_dir"] / "score_email", tree["functions_dir"] / "other_fn")
    path, _ = _build(tree, name="other_fn")
    with zipfile.ZipFile(path) as archive:
        assert not [n for n in archive.namelist() if n.startswith("models/")]


def test_a_model_that_does_not_match_its_card_is_refused(tree):
    (tree["model"] / "model.ubj").write_bytes(b"tampered")
    with pytest.raises(pkg.PackageError, match="does not match the sha256"):
        _build(tree)


def test_a_missing_model_says_how_to_make_one(tree):
    shutil.rmtree(tree["model"])
    with pytest.raises(pkg.PackageError, match="make train"):
        _build(tree)


def test_cli_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "infra" / "package_functions.py"), "score_email",
                             "--out", str(tmp_path / "out"), "--model-dir", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "make train" in result.stderr and "Traceback" not in result.stderr


def test_packaged_function_imports_and_loads_its_model(tmp_path, model_dir):
    """The real package: its own mailscore copy imports, and the model inside it loads."""
    out = tmp_path / "out"
    path, _ = pkg.write_package("score_email", out, model_dir)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(path) as archive:
        archive.extractall(unpacked)
    probe = (
        "import main, mailscore, pathlib;"
        "from mailscore.model import load_model;"
        "assert pathlib.Path(mailscore.__file__).parent == pathlib.Path('mailscore').resolve(), mailscore.__file__;"
        "print(load_model('models/active').version, callable(main.score_email))"
    )
    env = {**os.environ, "MAILSCORE_LAZY_INIT": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", probe], cwd=unpacked, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "True" and result.stdout.startswith("xgb-")


# --- make plan / make deploy preflight -------------------------------------------


@pytest.fixture
def sandbox(tmp_path):
    """An environment with no credentials and a fake terraform that records any call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "terraform-called"
    fake = bin_dir / "terraform"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    fake.chmod(0o755)
    tfvars = tmp_path / "terraform.tfvars"
    tfvars.write_text('project_id = "p-123456"\nregion = "europe-west1"\n')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "TFVARS": str(tfvars),
           "PACKAGE_DIR": str(tmp_path / "packages")}
    return env, marker, tfvars


@pytest.mark.parametrize("action", ["plan", "apply"])
def test_preflight_without_credentials_stops_with_a_message(sandbox, action):
    env, marker, _ = sandbox
    result = subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "no Google Cloud credentials" in result.stderr and "gcloud auth application-default login" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "terraform must not run without credentials"


def test_preflight_without_inputs_points_at_the_example(sandbox):
    env, marker, tfvars = sandbox
    tfvars.unlink()
    result = subprocess.run(["bash", str(SCRIPT), "plan"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "terraform.tfvars.example" in result.stderr
    assert not marker.exists()


def test_preflight_with_credentials_but_no_packages_asks_for_make_package(sandbox, tmp_path):
    env, marker, _ = sandbox
    key = tmp_path / "key.json"
    key.write_text("{}")
    env = {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(key)}
    result = subprocess.run(["bash", str(SCRIPT), "plan"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "make package" in result.stderr or "does not exist" in result.stderr
    assert not marker.exists()
