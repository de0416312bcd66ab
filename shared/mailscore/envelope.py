"""Turn what Pub/Sub delivers into an ``InboundMessage``, strictly.

Three shapes arrive: the Eventarc CloudEvent (``data = {"message": {...},
"subscription": ...}``), the raw push envelope the emulator sends (which
functions-framework converts into that same CloudEvent), and, for the CLI,
the push envelope JSON itself. Missing ``attributes`` default to empty
(case 11); ``data`` must be valid base64; the ``tenant`` attribute is
required. Anything else is an ``InvalidMessage`` with a reason code.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailscore.errors import InvalidMessage

MAX_ATTRIBUTE_CHARS = 256


@dataclass
class InboundMessage:
    """One email as delivered: raw bytes plus the publisher's attributes."""

    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    pubsub_message_id: str = ""
    publish_time: datetime | None = None

    @property
    def tenant(self) -> str:
        return self.attributes.get("tenant", "")

    @property
    def message_id(self) -> str:
        """The publisher's id; the Pub/Sub id when the publisher gave none."""
        return self.attributes.get("message_id") or f"pubsub:{self.pubsub_message_id}"


def from_push_message(message: Any) -> InboundMessage:
    """Decode the ``message`` object of a push envelope or CloudEvent payload."""
    if not isinstance(message, dict):
        raise InvalidMessage("envelope_invalid", "the envelope has no message object")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidMessage("attributes_invalid", "message.attributes is not an object")
    attributes = {str(k)[:MAX_ATTRIBUTE_CHARS]: str(v)[:MAX_ATTRIBUTE_CHARS] for k, v in attributes.items()}
    pubsub_id = str(message.get("messageId") or message.get("message_id") or "")
    inbound = InboundMessage(b"", attributes, pubsub_id, _parse_time(message.get("publishTime") or message.get("publish_time")))
    raw = message.get("data")
    if raw is None or raw == "":
        raise InvalidMessage("data_missing", "the message carries no data", stage="decode") from None
    if isinstance(raw, (bytes, bytearray)):
        inbound.data = bytes(raw)
    else:
        try:
            inbound.data = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidMessage("data_not_base64", "message.data is not valid base64") from None
    return inbound


def from_cloud_event(event: Any) -> InboundMessage:
    """Decode a functions-framework CloudEvent carrying a Pub/Sub message."""
    data = event.data if hasattr(event, "data") else event
    if isinstance(data, (bytes, bytearray)):
        raise InvalidMessage("envelope_invalid", "the event data is not a Pub/Sub message object")
    if not isinstance(data, dict) or "message" not in data:
        raise InvalidMessage("envelope_invalid", "the event data has no Pub/Sub message")
    return from_push_message(data["message"])


def require_tenant(message: InboundMessage) -> None:
    if not message.tenant.strip():
        raise InvalidMessage("missing_tenant", "the required attribute 'tenant' is absent", stage="decode")


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    # Pub/Sub writes up to nanoseconds; Python reads at most microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
