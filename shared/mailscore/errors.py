"""The error hierarchy: one base, one subclass per failure a caller handles."""

from __future__ import annotations


class MailscoreError(Exception):
    """Base of every error mailscore raises on purpose."""


class InvalidMessage(MailscoreError):
    """The input can never be scored; it is dead-lettered, not retried.

    ``reason`` is a short machine-readable code (it becomes the dead-letter
    attribute); ``stage`` says where it was found. Messages never carry
    email content.
    """

    def __init__(self, reason: str, detail: str, *, stage: str = "decode") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.stage = stage


class TransientError(MailscoreError):
    """A dependency failed in a way that a retry may fix (Bigtable, publish)."""


class UnexpectedFailure(MailscoreError):
    """Anything unexpected while scoring, re-raised by its type name only.

    What escapes a function handler is logged with its traceback by
    functions-framework, and an exception's message can quote the input (a
    header, a line of the body): so the original's message and chain stay
    behind; the log line before it says where it happened.
    """


class ModelError(MailscoreError):
    """The model cannot be loaded or does not match this code's feature schema."""


class ConfigError(MailscoreError):
    """A setting is missing or out of range."""


class EmulatorNotInstalled(MailscoreError):
    """A local emulator binary is absent; the message says how to install it."""
