"""Every setting in one frozen dataclass, read once per instance by ``from_env``.

Precedence: an explicit keyword argument beats the environment variable,
which beats the default. Each field's variable is ``MAILSCORE_<FIELD>`` in
upper case (``ENV_VARS`` lists them all; Terraform sets exactly these).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from mailscore.errors import ConfigError


@dataclass(frozen=True)
class ParseLimits:
    """Work bounds applied before and during parsing, so no input costs more."""

    max_header_bytes: int = 64 * 1024
    max_header_value_chars: int = 4 * 1024
    max_headers: int = 512
    max_mime_parts: int = 64
    max_mime_depth: int = 8
    max_body_scan_bytes: int = 512 * 1024
    max_message_bytes: int = 8 * 1024 * 1024
    max_urls: int = 256


@dataclass(frozen=True)
class Settings:
    """Runtime settings of the scoring function and the CLI."""

    project_id: str = "mailscore-local"
    inbound_topic: str = "emails"
    verdict_topic: str = "verdicts"
    dead_letter_topic: str = "dead-letter"
    bigtable_instance: str = "mailscore"
    profile_table: str = "sender_profiles"
    model_dir: str = "models/active"
    # Labels: score >= phishing -> "phishing"; >= suspicious -> "suspicious".
    # None means "use the thresholds chosen in the model card".
    threshold_suspicious: float | None = None
    threshold_phishing: float | None = None
    # Authentication-Results are trusted only from these authserv-ids.
    trusted_authserv_ids: tuple[str, ...] = ("mx.mailscore.example",)
    bigtable_attempt_timeout_seconds: float = 0.5
    bigtable_operation_timeout_seconds: float = 2.0
    publish_timeout_seconds: float = 10.0
    top_reasons: int = 5
    log_level: str = "INFO"
    # Online profile updates (functions/update_profile): the subscription on
    # the verdict topic, and how long an applied message id is remembered.
    update_subscription: str = "update-profile-push"
    dedupe_ttl_seconds: int = 7 * 24 * 3600
    # Per-message latency budget, counted from publishTime; the Bigtable read
    # gets what is left of it. The profile cache is per instance.
    latency_budget_ms: float = 200.0
    # A message already past its budget (e.g. after a backlog) still gets a
    # read bounded by this; 0 scores such messages without history.
    history_min_timeout_ms: float = 25.0
    profile_cache_max_entries: int = 100_000
    profile_cache_ttl_seconds: float = 60.0
    # The micro-batched worker's pull subscription and batch size.
    batch_subscription: str = "score-email-batch"
    batch_max_messages: int = 256
    # Claim-check: emails above this size travel by reference, stored under
    # this location (gs://bucket/prefix in the cloud, a folder locally).
    claim_check_threshold_bytes: int = 7 * 1024 * 1024
    claim_check_location: str = ""
    # Shadow model: a candidate scored beside the live one, never labelling.
    shadow_model_dir: str = ""
    # Where a gs:// model (MAILSCORE_MODEL_DIR or the shadow) is downloaded to.
    model_cache_dir: str = "/tmp/mailscore-models"
    # Training picks the thresholds for these false-positive rates on
    # held-out legitimate mail: suspicious at 1%, phishing at 0.1%.
    target_fpr_suspicious: float = 0.01
    target_fpr_phishing: float = 0.001
    # Reasons (tree SHAP) for "all" verdicts or only "flagged" (non-safe) ones.
    reasons_for: str = "all"
    limits: ParseLimits = field(default_factory=ParseLimits)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings: ``overrides`` > ``env`` (default ``os.environ``) > defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "limits":
                continue
            raw = env.get(env_var(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        limits = {}
        for f in dataclasses.fields(ParseLimits):
            raw = env.get(env_var(f.name))
            if raw:
                limits[f.name] = _convert(f.name, "int", raw)
        values["limits"] = ParseLimits(**limits)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError naming the variable and the accepted range."""
        for name in ("threshold_suspicious", "threshold_phishing"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{env_var(name)} must be between 0 and 1, got {value}")
        if (
            self.threshold_suspicious is not None
            and self.threshold_phishing is not None
            and self.threshold_suspicious > self.threshold_phishing
        ):
            raise ConfigError(
                "MAILSCORE_THRESHOLD_SUSPICIOUS must not exceed "
                "MAILSCORE_THRESHOLD_PHISHING"
            )
        for name in ("target_fpr_suspicious", "target_fpr_phishing"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{env_var(name)} must be between 0 and 1, got {getattr(self, name)}")
        if self.target_fpr_phishing > self.target_fpr_suspicious:
            raise ConfigError("MAILSCORE_TARGET_FPR_PHISHING must not exceed MAILSCORE_TARGET_FPR_SUSPICIOUS")
        if self.reasons_for not in ("all", "flagged"):
            raise ConfigError(f"MAILSCORE_REASONS_FOR must be 'all' or 'flagged', got {self.reasons_for!r}")
        for name in ("bigtable_attempt_timeout_seconds", "publish_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{env_var(name)} must be positive")


def env_var(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return "MAILSCORE_" + field_name.upper()


def _convert(name: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    try:
        if "tuple" in type_name:
            return tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        if "float" in type_name:
            return float(raw)
        if "int" in type_name:
            return int(raw)
    except ValueError:
        raise ConfigError(
            f"{env_var(name)} must be a {type_name.split()[0]}, got {raw!r}"
        ) from None
    return raw


ENV_VARS: tuple[str, ...] = tuple(
    env_var(f.name) for f in dataclasses.fields(Settings) if f.name != "limits"
) + tuple(env_var(f.name) for f in dataclasses.fields(ParseLimits))
