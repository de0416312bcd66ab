"""Shared fixtures: paths, a model trained once per session, emulators on free ports."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from mailscore import emulators as emu
from mailscore.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TRAIN_DIR = ROOT / "data" / "train"
CASES_DIR = ROOT.parent / "shared" / "cases"
CORPUS_DIR = Path(os.environ.get("MAILSCORE_CORPUS", ROOT.parent / "shared" / "corpus"))

_EMULATOR_SKIP = emu.emulators_available()


def pytest_report_header(config):
    if _EMULATOR_SKIP and not (os.environ.get("PUBSUB_EMULATOR_HOST") and os.environ.get("BIGTABLE_EMULATOR_HOST")):
        return ["!" * 70, f"EMULATOR TESTS WILL SKIP: {_EMULATOR_SKIP}", "!" * 70]
    return ["emulators: available"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env(env={})


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, settings) -> Path:
    """A model trained on the shipped emails, once per test session."""
    from mailscore.training import train

    out = tmp_path_factory.mktemp("model") / "active"
    # 45 legitimate emails cannot resolve a 1% false-positive rate (1/45 is
    # 2.2%), so the default targets would put both thresholds at the highest
    # held-out legitimate score; 10% / 5% are targets this data can measure.
    loose = Settings.from_env(env={}, target_fpr_suspicious=0.1, target_fpr_phishing=0.05)
    train([TRAIN_DIR], out, loose)
    return out


@pytest.fixture(scope="session")
def model(model_dir):
    from mailscore.model import load_model

    return load_model(model_dir)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory):
    """Both emulators, started on free ports for the session (or the ones in the env)."""
    if _EMULATOR_SKIP and not (os.environ.get("PUBSUB_EMULATOR_HOST") and os.environ.get("BIGTABLE_EMULATOR_HOST")):
        pytest.skip(f"emulators unavailable: {_EMULATOR_SKIP}")
    saved = {k: os.environ.get(k) for k in ("PUBSUB_EMULATOR_HOST", "BIGTABLE_EMULATOR_HOST")}
    started = emu.start(tmp_path_factory.mktemp("emulator-logs"))
    os.environ.update(started.env())
    yield started
    started.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def unique_settings(emulators, model_dir) -> Settings:
    """Settings with topic and table names no other test uses."""
    tag = uuid.uuid4().hex[:8]
    return Settings.from_env(
        env={},
        inbound_topic=f"emails-{tag}",
        verdict_topic=f"verdicts-{tag}",
        dead_letter_topic=f"dead-letter-{tag}",
        profile_table=f"profiles_{tag}",
        model_dir=str(model_dir),
    )
