"""Sender profiles on the real Bigtable emulator."""

from __future__ import annotations

import pytest

from mailscore import emulators as emu
from mailscore.errors import TransientError
from mailscore.features import History
from mailscore.profiles import Profile, ProfileStore, ensure_table

pytestmark = pytest.mark.emulator


def test_write_then_read_profiles(unique_settings):
    ensure_table(unique_settings)
    ensure_table(unique_settings)  # idempotent
    store = ProfileStore(unique_settings)
    profile = Profile()
    profile.add(1_700_000_000.0, False, "bob@corp.example")
    profile.add(1_700_086_400.0, True, "carol@corp.example")
    assert store.write([("acme", "news@news.example.org", profile)]) == 1
    history = store.get("acme", "NEWS@news.example.org")
    assert history == History(msg_count=2, first_seen=1_700_000_000.0, flagged_count=1, recipients=2)
    assert store.get("other-tenant", "news@news.example.org") == History()
    assert store.get("acme", "nobody@news.example.org") == History()
    # Rewriting keeps one version per cell (GC rule) and reads the latest.
    profile.add(1_700_172_800.0, False, None)
    store.write([("acme", "news@news.example.org", profile)])
    assert store.get("acme", "news@news.example.org").msg_count == 3
    store.close()


def test_unreachable_bigtable_is_transient(unique_settings, tmp_path, monkeypatch):
    own = emu.Emulators(log_dir=tmp_path)
    own.start_bigtable()
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", own.bigtable_host)
    settings = unique_settings.__class__.from_env(
        env={}, profile_table=unique_settings.profile_table, bigtable_operation_timeout_seconds=1.0,
        bigtable_attempt_timeout_seconds=0.2)
    ensure_table(settings)
    store = ProfileStore(settings)
    assert store.get("t", "a@x.example") == History()
    own.stop()
    with pytest.raises(TransientError, match="bigtable read failed"):
        store.get("t", "a@x.example")
    store.close()
