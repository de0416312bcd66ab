"""Claim-check for large emails, and the one publish path every publisher uses.

Pub/Sub takes at most 10 MB per request and the push envelope base64-encodes
the data (4/3 larger). ``publish_email`` therefore checks the encoded size:
above ``MAILSCORE_CLAIM_CHECK_THRESHOLD_BYTES`` the raw email is written to
object storage and the message carries only a reference (attributes
``claim_check`` = the object's URI and ``claim_check_sha256``). The worker
fetches it with ``fetch``, verifies the hash, and scores as usual.

Locations: ``gs://bucket/prefix`` in the cloud (google-cloud-storage), or a
local folder (a path or ``file://`` URI) standing in for the bucket behind
the same interface. The worker only fetches from under its own configured
location, so a publisher cannot make it read arbitrary files or buckets.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from mailscore.errors import ConfigError, InvalidMessage, TransientError
from mailscore.settings import Settings

ATTR_URI = "claim_check"
ATTR_SHA = "claim_check_sha256"
PUBSUB_REQUEST_LIMIT = 10 * 1000 * 1000


def encoded_size(raw: bytes, attributes: dict[str, str]) -> int:
    """Bytes the message occupies once base64-encoded in a push/JSON request."""
    return 4 * ((len(raw) + 2) // 3) + sum(len(k) + len(v) for k, v in attributes.items())


def _local_root(location: str) -> Path | None:
    if location.startswith("file://"):
        return Path(location[len("file://"):]).resolve()
    if "://" not in location:
        return Path(location).resolve()
    return None


class ObjectStore:
    """Put and get email bytes under one location (a folder or a gs:// prefix)."""

    def __init__(self, location: str) -> None:
        if not location:
            raise ConfigError("MAILSCORE_CLAIM_CHECK_LOCATION is not set: large emails have nowhere to go")
        self.location = location.rstrip("/")
        self.root = _local_root(self.location)
        if self.root is None and not self.location.startswith("gs://"):
            raise ConfigError(f"MAILSCORE_CLAIM_CHECK_LOCATION must be a folder or gs://bucket/prefix, got {location!r}")
        self._gcs = None

    def _bucket(self):
        if self._gcs is None:
            from google.cloud import storage  # deployed with the function; untested locally

            bucket, _, self._prefix = self.location[len("gs://"):].partition("/")
            self._gcs = storage.Client().bucket(bucket)
        return self._gcs

    def put(self, tenant: str, raw: bytes) -> tuple[str, str]:
        digest = hashlib.sha256(raw).hexdigest()
        name = f"{_safe(tenant)}/{digest}.eml"
        if self.root is not None:
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, path)
            return path.as_uri(), digest
        blob_name = f"{self._prefix}/{name}" if self._prefix else name
        self._bucket().blob(blob_name).upload_from_string(raw)
        return f"{self.location}/{name}", digest

    def get(self, uri: str) -> bytes:
        if self.root is not None:
            path = _local_root(uri)
            if path is None or not path.is_relative_to(self.root):
                raise InvalidMessage("claim_check_outside_store", "the reference is not under the configured location", stage="fetch")
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise InvalidMessage("claim_check_missing", "the referenced email does not exist", stage="fetch") from None
            except OSError as exc:
                raise TransientError(f"claim-check read failed: {type(exc).__name__}") from exc
        if not uri.startswith(self.location + "/") or ".." in uri:
            raise InvalidMessage("claim_check_outside_store", "the reference is not under the configured location", stage="fetch")
        from google.api_core import exceptions as gexc

        name = uri[len("gs://"):].partition("/")[2]
        try:
            return self._bucket().blob(name).download_as_bytes()
        except gexc.NotFound:
            raise InvalidMessage("claim_check_missing", "the referenced email does not exist", stage="fetch") from None
        except Exception as exc:  # noqa: BLE001
            raise TransientError(f"claim-check read failed: {type(exc).__name__}") from exc


def _safe(tenant: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in tenant)[:64] or "_"


def fetch(store: ObjectStore | None, attributes: dict[str, str]) -> bytes:
    """The email behind a claim-check reference, verified against its hash."""
    if store is None:
        raise InvalidMessage("claim_check_unsupported", "this worker has no claim-check location configured", stage="fetch")
    raw = store.get(attributes[ATTR_URI])
    if hashlib.sha256(raw).hexdigest() != attributes.get(ATTR_SHA, ""):
        raise InvalidMessage("claim_check_corrupt", "the referenced email does not match its hash", stage="fetch")
    return raw


def make_publisher():
    """A publisher tuned for throughput: batches of up to 100 messages or 5 ms."""
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(max_messages=100, max_bytes=4 * 1000 * 1000, max_latency=0.005)
    )


def publish_email(publisher: Any, topic: str, raw: bytes, attributes: dict[str, str], settings: Settings,
                  store: ObjectStore | None = None):
    """Publish one email, by value or (when too large) by claim-check; returns the future."""
    if not raw:
        raw = b" "  # Pub/Sub needs data; an empty email is still an input to account for
    if encoded_size(raw, attributes) <= settings.claim_check_threshold_bytes:
        return publisher.publish(topic, raw, **attributes)
    store = store or ObjectStore(settings.claim_check_location)
    uri, digest = store.put(attributes.get("tenant", ""), raw)
    return publisher.publish(topic, uri.encode("utf-8"), **attributes, **{ATTR_URI: uri, ATTR_SHA: digest})
