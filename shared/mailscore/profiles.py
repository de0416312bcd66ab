"""Sender profiles: their Bigtable row layout, reads, bulk loads and history replay.

Row key: ``<tenant>#<reversed sender domain>#<local part>``, e.g.
``acme#org.example.news#alerts``. Reversing the domain keeps one domain's
senders (and its subdomains') contiguous for prefix scans, and the tenant
prefix keeps tenants apart. One column family, ``p``, holds one cell per
counter with a GC rule of one version: a profile is a current state, not a
time series. Values are 8-byte big-endian signed integers (the encoding
Bigtable's atomic increments use), so later online updates can add to them.

| column          | meaning                                          |
|-----------------|--------------------------------------------------|
| p:msg_count     | messages seen from the sender                    |
| p:first_seen    | epoch seconds of the first message               |
| p:last_seen     | epoch seconds of the latest message              |
| p:flagged_count | messages labelled phishing                       |
| p:recipients    | distinct recipients (exact when bulk-loaded)     |
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mailscore.errors import TransientError
from mailscore.features import History
from mailscore.settings import Settings

FAMILY = "p"
COLUMNS = ("msg_count", "first_seen", "last_seen", "flagged_count", "recipients")
_INT64 = struct.Struct(">q")
log = logging.getLogger("mailscore.profiles")


def row_key(tenant: str, address: str) -> bytes:
    """The profile row of ``address`` within ``tenant``."""
    local, _, domain = address.lower().rpartition("@")
    reversed_domain = ".".join(reversed(domain.split(".")))
    return f"{tenant.replace('#', '_')}#{reversed_domain}#{local}".encode("utf-8")


def encode_int(value: int) -> bytes:
    return _INT64.pack(int(value))


def decode_int(value: bytes) -> int:
    return _INT64.unpack(value)[0] if len(value) == 8 else 0


def history_from_cells(cells: dict[str, int]) -> History:
    return History(
        msg_count=cells.get("msg_count", 0),
        first_seen=float(cells["first_seen"]) if "first_seen" in cells else None,
        flagged_count=cells.get("flagged_count", 0),
        recipients=cells.get("recipients", 0),
    )


@dataclass
class Profile:
    """A sender's accumulated state while replaying history."""

    msg_count: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    flagged_count: int = 0
    recipients: set[str] = field(default_factory=set)

    def snapshot(self) -> History:
        return History(self.msg_count, self.first_seen, self.flagged_count, len(self.recipients))

    def add(self, when: float, flagged: bool, recipient: str | None) -> None:
        self.msg_count += 1
        self.first_seen = when if self.first_seen is None else min(self.first_seen, when)
        self.last_seen = when if self.last_seen is None else max(self.last_seen, when)
        self.flagged_count += int(flagged)
        if recipient:
            self.recipients.add(recipient.lower())

    def cells(self) -> dict[str, int]:
        return {
            "msg_count": self.msg_count,
            "first_seen": int(self.first_seen or 0),
            "last_seen": int(self.last_seen or 0),
            "flagged_count": self.flagged_count,
            "recipients": len(self.recipients),
        }


@dataclass(frozen=True)
class Observation:
    """One message of a history replay: who sent it, when, to whom, and its label."""

    tenant: str
    sender: str | None
    when: float
    flagged: bool
    recipient: str | None


def replay(observations: list[Observation]) -> tuple[list[History | None], dict[tuple[str, str], Profile]]:
    """Point-in-time history for each observation, and the final profiles.

    Each message sees only the messages that arrived strictly before it, so
    a model trained on these features never sees its own future.
    Observations without a usable sender get ``History()`` (unknown sender).
    """
    order = sorted(range(len(observations)), key=lambda i: observations[i].when)
    profiles: dict[tuple[str, str], Profile] = {}
    seen: list[History | None] = [None] * len(observations)
    for i in order:
        obs = observations[i]
        if obs.sender is None:
            seen[i] = History()
            continue
        profile = profiles.setdefault((obs.tenant, obs.sender), Profile())
        seen[i] = profile.snapshot()
        profile.add(obs.when, obs.flagged, obs.recipient)
    return seen, profiles


def replay_split(observations: list[Observation], contributes: list[bool]) -> list[History | None]:
    """Point-in-time history where only ``contributes[i]`` messages add to a profile.

    For evaluation: training messages build the profiles; test messages only
    read them, so no test message sees another test message's label.
    """
    order = sorted(range(len(observations)), key=lambda i: observations[i].when)
    profiles: dict[tuple[str, str], Profile] = {}
    seen: list[History | None] = [None] * len(observations)
    for i in order:
        obs = observations[i]
        if obs.sender is None:
            seen[i] = History()
            continue
        profile = profiles.get((obs.tenant, obs.sender))
        seen[i] = profile.snapshot() if profile is not None else History()
        if contributes[i]:
            profiles.setdefault((obs.tenant, obs.sender), Profile()).add(obs.when, obs.flagged, obs.recipient)
    return seen


class ProfileStore:
    """Reads and bulk-writes sender profiles in Bigtable (one client per instance)."""

    def __init__(self, settings: Settings) -> None:
        from google.cloud.bigtable.data import BigtableDataClient

        self.settings = settings
        self._client = BigtableDataClient(project=settings.project_id)
        self._table = self._client.get_table(settings.bigtable_instance, settings.profile_table)

    def close(self) -> None:
        self._client.close()

    def get(self, tenant: str, address: str) -> History:
        """The sender's history; an empty History when the row does not exist.

        Raises TransientError when Bigtable cannot answer within the configured
        timeouts, so the message is redelivered rather than scored blind.
        """
        from google.cloud.bigtable.data import row_filters

        try:
            row = self._table.read_row(
                row_key(tenant, address),
                row_filter=row_filters.CellsColumnLimitFilter(1),
                operation_timeout=self.settings.bigtable_operation_timeout_seconds,
                attempt_timeout=self.settings.bigtable_attempt_timeout_seconds,
            )
        except Exception as exc:  # noqa: BLE001 - every client failure is retryable here
            raise TransientError(f"bigtable read failed: {type(exc).__name__}") from exc
        if row is None:
            return History()
        cells = {cell.qualifier.decode(): decode_int(cell.value) for cell in row if cell.family == FAMILY}
        return history_from_cells(cells)

    def write(self, profiles: Iterable[tuple[str, str, Profile]], batch: int = 500) -> int:
        """Write whole profiles (tenant, address, profile); returns rows written."""
        from google.cloud.bigtable.data import RowMutationEntry, SetCell

        written = 0
        for chunk in _chunks(profiles, batch):
            entries = [
                RowMutationEntry(
                    row_key(tenant, address),
                    [SetCell(FAMILY, name, encode_int(value)) for name, value in profile.cells().items()],
                )
                for tenant, address, profile in chunk
            ]
            self._table.bulk_mutate_rows(entries, operation_timeout=60)
            written += len(entries)
        return written


def ensure_table(settings: Settings) -> None:
    """Create the profile table with its column family, if it does not exist."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud.bigtable import Client, column_family

    client = Client(project=settings.project_id, admin=True)
    table = client.instance(settings.bigtable_instance).table(settings.profile_table)
    try:
        table.create(column_families={FAMILY: column_family.MaxVersionsGCRule(1)})
        log.info("created table", extra={"fields": {"table": settings.profile_table}})
    except AlreadyExists:
        pass


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
