"""Settings from the environment; profile row keys, encoding and history replay."""

from __future__ import annotations

import pytest

from mailscore.errors import ConfigError
from mailscore.profiles import Observation, decode_int, encode_int, replay, row_key
from mailscore.settings import ENV_VARS, Settings


def test_env_overrides_defaults_and_limits():
    s = Settings.from_env(env={"MAILSCORE_VERDICT_TOPIC": "v2", "MAILSCORE_MAX_MIME_PARTS": "9",
                               "MAILSCORE_TRUSTED_AUTHSERV_IDS": "MX1.example, mx2.example"})
    assert s.verdict_topic == "v2" and s.limits.max_mime_parts == 9
    assert s.trusted_authserv_ids == ("mx1.example", "mx2.example")
    assert "MAILSCORE_VERDICT_TOPIC" in ENV_VARS and "MAILSCORE_MAX_MIME_PARTS" in ENV_VARS


@pytest.mark.parametrize(("var", "value"), [("MAILSCORE_THRESHOLD_PHISHING", "2"), ("MAILSCORE_PUBLISH_TIMEOUT_SECONDS", "abc"),
                                             ("MAILSCORE_PUBLISH_TIMEOUT_SECONDS", "-1")])
def test_bad_settings_name_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        Settings.from_env(env={var: value})


def test_row_key_groups_by_tenant_and_domain():
    key = row_key("acme", "Alerts@News.Example.org")
    assert key.startswith(b"acme#") and b"alerts" not in key and b"example" not in key
    assert key.split(b"#")[1] == row_key("acme", "other@news.example.org").split(b"#")[1]  # same domain, same prefix
    assert key == row_key("acme", "alerts@news.example.org")
    assert row_key("a#b", "x@y.example").startswith(b"a_b#")
    assert decode_int(encode_int(-5)) == -5 and len(encode_int(7)) == 8


def test_replay_is_point_in_time():
    obs = [
        Observation("t", "a@x.example", 300.0, False, "r1@corp.example"),
        Observation("t", "a@x.example", 100.0, True, "r2@corp.example"),
        Observation("t", "a@x.example", 200.0, False, "r1@corp.example"),
        Observation("t", None, 50.0, True, None),
        Observation("u", "a@x.example", 150.0, False, None),
    ]
    seen, profiles = replay(obs)
    assert seen[1].msg_count == 0  # the earliest message sees nothing
    assert (seen[2].msg_count, seen[2].flagged_count, seen[2].first_seen) == (1, 1, 100.0)
    assert (seen[0].msg_count, seen[0].recipients) == (2, 2)
    assert seen[4].msg_count == 0  # another tenant's history is separate
    final = profiles[("t", "a@x.example")]
    assert final.cells() == {"msg_count": 3, "first_seen": 100, "last_seen": 300, "flagged_count": 1, "recipients": 2}


def test_targets_and_reasons_setting_are_validated():
    settings = Settings.from_env(env={"MAILSCORE_TARGET_FPR_SUSPICIOUS": "0.02", "MAILSCORE_REASONS_FOR": "flagged"})
    assert settings.target_fpr_suspicious == 0.02 and settings.reasons_for == "flagged"
    for env in ({"MAILSCORE_TARGET_FPR_PHISHING": "0"}, {"MAILSCORE_TARGET_FPR_PHISHING": "0.5"},
                {"MAILSCORE_REASONS_FOR": "some"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env=env)


def test_runner_passes_the_shadow_model_to_the_function(tmp_path):
    from mailscore.runner import function_env

    settings = Settings.from_env(env={})
    with_shadow = function_env(settings, {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}, tmp_path / "live", tmp_path / "cand")
    assert with_shadow["MAILSCORE_SHADOW_MODEL_DIR"] == str((tmp_path / "cand").resolve())
    assert with_shadow["MAILSCORE_MODEL_DIR"] == str((tmp_path / "live").resolve())
    assert function_env(settings, {}, tmp_path / "live", None)["MAILSCORE_SHADOW_MODEL_DIR"] == ""
