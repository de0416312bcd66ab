"""Sender profiles in Bigtable: row layout, reads, exactly-once updates, history replay.

Row key: ``<tenant>#<sha256(domain)[:12]>#<sha256(domain/local)[:16]>``, e.g.
``acme#5d2d3ceb7abe#2c26b46b68ffc68f``. The tenant prefix keeps tenants apart
and their rows contiguous; the domain digest keeps one domain's senders
contiguous (a prefix scan reads a whole sending domain); hashing both parts
means neither the table nor the verdict (which carries the key to the
updater as ``profile_key``) holds an address or a domain. The key is
computed the same way by the scorer, the updater and the bulk loader.

Column family ``p`` (GC: 1 version; a profile is a current state, not a
time series). Integers are 8-byte big-endian signed (the encoding Bigtable's
increments use):

| column             | meaning                                                |
|--------------------|--------------------------------------------------------|
| p:msg_count        | messages seen from the sender                          |
| p:first_seen       | epoch seconds of the first message                     |
| p:last_seen        | epoch seconds of the latest message                    |
| p:flagged_count    | messages labelled phishing (or phish in training data) |
| p:label_<label>    | messages per verdict label (safe, suspicious, phishing)|
| p:recipients       | distinct recipients (HyperLogLog estimate, see below)  |
| p:recipients_hll   | 256 HyperLogLog registers (p=8, std. error ~6.5%)      |
| p:updated_at       | epoch milliseconds of the last write (freshness)       |
| p:version          | write counter; every update is a compare-and-set on it |

Column family ``d`` (GC: max age = the dedupe TTL, 1 version): one cell per
applied message, qualifier = the publisher's message id. The marker is
written in the *same* atomic check-and-mutate as the new counters, so an
update is applied entirely or not at all: a redelivery or replay finds its
marker and changes nothing, and a crash at any point leaves either the old
row or the new one. Note: the Bigtable emulator does not apply GC rules, so
markers never expire locally; in the cloud a sender's row holds at most
(messages per TTL) markers, which bounds the TTL for very high-volume
senders (a week of 1M messages is ~50 MB, under the 256 MB row limit).
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mailscore.errors import TransientError
from mailscore.features import History
from mailscore.settings import Settings

FAMILY = "p"
DEDUPE_FAMILY = "d"
LABELS = ("safe", "suspicious", "phishing")
HLL_BITS = 8
HLL_REGISTERS = 1 << HLL_BITS
_INT64 = struct.Struct(">q")
_MAX_CAS_ATTEMPTS = 20
log = logging.getLogger("mailscore.profiles")


def profile_key(tenant: str, address: str) -> str:
    """The profile row key of ``address`` within ``tenant`` (no mailbox name in it)."""
    local, _, domain = address.strip().lower().rpartition("@")
    domain_digest = hashlib.sha256(domain.encode("utf-8")).hexdigest()[:12]
    local_digest = hashlib.sha256(f"{domain}/{local}".encode("utf-8")).hexdigest()[:16]
    return f"{tenant.replace('#', '_')}#{domain_digest}#{local_digest}"


def row_key(tenant: str, address: str) -> bytes:
    return profile_key(tenant, address).encode("utf-8")


def recipient_hash(recipient: str | None) -> str | None:
    """An opaque, stable id for a recipient address (for the distinct count)."""
    if not recipient or "@" not in recipient:
        return None
    return hashlib.sha256(recipient.strip().lower().encode("utf-8")).hexdigest()[:16]


def encode_int(value: int) -> bytes:
    return _INT64.pack(int(value))


def decode_int(value: bytes) -> int:
    return _INT64.unpack(value)[0] if len(value) == 8 else 0


# --- HyperLogLog for distinct recipients --------------------------------------


def hll_add(registers: bytearray, item_hash: str) -> None:
    value = int(hashlib.sha256(item_hash.encode("ascii")).hexdigest()[:16], 16)  # 64 bits
    index = value >> (64 - HLL_BITS)
    rest = value & ((1 << (64 - HLL_BITS)) - 1)
    rank = (64 - HLL_BITS) - rest.bit_length() + 1
    if rank > registers[index]:
        registers[index] = rank


def hll_estimate(registers: bytes) -> int:
    if not registers:
        return 0
    m = len(registers)
    alpha = 0.7213 / (1 + 1.079 / m)
    raw = alpha * m * m / sum(2.0 ** -r for r in registers)
    zeros = registers.count(0)
    if raw <= 2.5 * m and zeros:
        return int(round(m * math.log(m / zeros)))  # linear counting for small sets
    return int(round(raw))


# --- what the scorer reads ----------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A profile as read: the model's History plus when the row was last written."""

    history: History
    updated_at: float | None  # epoch seconds


def history_from_cells(cells: dict[str, bytes]) -> Snapshot:
    ints = {k: decode_int(v) for k, v in cells.items() if k != "recipients_hll"}
    history = History(
        msg_count=ints.get("msg_count", 0),
        first_seen=float(ints["first_seen"]) if "first_seen" in ints else None,
        flagged_count=ints.get("flagged_count", 0),
        recipients=ints.get("recipients", 0),
    )
    return Snapshot(history, ints["updated_at"] / 1000.0 if "updated_at" in ints else None)


# --- replay (training and bulk loads) -----------------------------------------


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

    def hll(self) -> bytes:
        registers = bytearray(HLL_REGISTERS)
        for recipient in self.recipients:
            hashed = recipient_hash(recipient)
            if hashed:
                hll_add(registers, hashed)
        return bytes(registers)


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
    return _replay(observations, [True] * len(observations))


# --- online updates -----------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """One scored message's effect on its sender's profile."""

    profile_key: str
    message_id: str
    label: str
    observed_at: float  # epoch seconds
    recipient_hash: str | None = None


def apply_update(cells: dict[str, bytes], update: Update, now_ms: int) -> dict[str, bytes]:
    """The new ``p`` cells after ``update`` (pure: the caller writes them atomically)."""
    ints = {k: decode_int(v) for k, v in cells.items() if k != "recipients_hll"}
    when = int(update.observed_at)
    registers = bytearray(cells.get("recipients_hll", b"") or bytes(HLL_REGISTERS))
    if len(registers) != HLL_REGISTERS:
        registers = bytearray(HLL_REGISTERS)
    if update.recipient_hash:
        hll_add(registers, update.recipient_hash)
    count = ints.get("msg_count", 0)
    new = {
        "msg_count": count + 1,
        "first_seen": min(ints["first_seen"], when) if count and "first_seen" in ints else when,
        "last_seen": max(ints.get("last_seen", when), when),
        "flagged_count": ints.get("flagged_count", 0) + int(update.label == "phishing"),
        f"label_{update.label}": ints.get(f"label_{update.label}", 0) + 1,
        "recipients": hll_estimate(bytes(registers)) if any(registers) else ints.get("recipients", 0),
        "updated_at": now_ms,
        "version": ints.get("version", 0) + 1,
    }
    out = {name: encode_int(value) for name, value in new.items()}
    out["recipients_hll"] = bytes(registers)
    return out


def replay_split(observations: list[Observation], contributes: list[bool]) -> list[History | None]:
    """Point-in-time history where only ``contributes[i]`` messages add to a profile.

    For evaluation: training messages build the profiles; test messages only
    read them, so no test message sees another test message's label.
    """
    return _replay(observations, contributes)[0]


def _replay(observations: list[Observation], contributes: list[bool]) -> tuple[list[History | None], dict]:
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
    return seen, profiles


class ProfileStore:
    """Reads and writes sender profiles in Bigtable (one client per instance)."""

    def __init__(self, settings: Settings) -> None:
        from google.cloud.bigtable.data import BigtableDataClient

        self.settings = settings
        self._client = BigtableDataClient(project=settings.project_id)
        self._table = self._client.get_table(settings.bigtable_instance, settings.profile_table)

    def close(self) -> None:
        self._client.close()

    def _timeouts(self, budget_s: float | None) -> dict:
        operation = self.settings.bigtable_operation_timeout_seconds
        if budget_s is not None:
            operation = max(0.001, min(operation, budget_s))
        return {"operation_timeout": operation,
                "attempt_timeout": min(self.settings.bigtable_attempt_timeout_seconds, operation)}

    def read(self, key: str, budget_s: float | None = None) -> Snapshot:
        """The profile at ``key`` (empty History if absent); TransientError on failure."""
        from google.cloud.bigtable.data import row_filters

        row_filter = row_filters.RowFilterChain([row_filters.FamilyNameRegexFilter(FAMILY),
                                                 row_filters.CellsColumnLimitFilter(1)])
        try:
            row = self._table.read_row(key.encode("utf-8"), row_filter=row_filter, **self._timeouts(budget_s))
        except Exception as exc:  # noqa: BLE001 - every client failure is a lookup failure here
            raise TransientError(f"bigtable read failed: {type(exc).__name__}") from exc
        if row is None:
            return Snapshot(History(), None)
        return history_from_cells({cell.qualifier.decode(): cell.value for cell in row if cell.family == FAMILY})

    def read_many(self, keys: list[str], budget_s: float | None = None) -> dict[str, Snapshot]:
        """Several profiles with one multi-row ``read_rows`` query; absent keys map to empty."""
        from google.cloud.bigtable.data import ReadRowsQuery, row_filters

        unique = sorted(set(keys))
        if not unique:
            return {}
        row_filter = row_filters.RowFilterChain([row_filters.FamilyNameRegexFilter(FAMILY),
                                                 row_filters.CellsColumnLimitFilter(1)])
        query = ReadRowsQuery(row_keys=[k.encode("utf-8") for k in unique], row_filter=row_filter)
        try:
            rows = self._table.read_rows(query, **self._timeouts(budget_s))
        except Exception as exc:  # noqa: BLE001
            raise TransientError(f"bigtable read failed: {type(exc).__name__}") from exc
        found = {
            row.row_key.decode("utf-8"): history_from_cells(
                {cell.qualifier.decode(): cell.value for cell in row if cell.family == FAMILY})
            for row in rows
        }
        return {key: found.get(key, Snapshot(History(), None)) for key in unique}

    def get(self, tenant: str, address: str) -> History:
        """The sender's history (no budget); kept for offline tools."""
        return self.read(profile_key(tenant, address)).history

    def write(self, profiles: Iterable[tuple[str, str, Profile]], batch: int = 500) -> int:
        """Bulk-load whole profiles (tenant, address, profile); returns rows written."""
        from google.cloud.bigtable.data import RowMutationEntry, SetCell

        written = 0
        now_ms = int(time.time() * 1000)
        for chunk in _chunks(profiles, batch):
            entries = []
            for tenant, address, profile in chunk:
                cells = {name: encode_int(value) for name, value in profile.cells().items()}
                cells["recipients_hll"] = profile.hll()
                cells["updated_at"] = encode_int(now_ms)
                entries.append(RowMutationEntry(row_key(tenant, address),
                                                [SetCell(FAMILY, name, value) for name, value in cells.items()]))
            self._table.bulk_mutate_rows(entries, operation_timeout=60)
            written += len(entries)
        return written

    def apply(self, update: Update) -> str:
        """Apply one message's update exactly once: ``applied`` or ``duplicate``.

        Optimistic concurrency on the row: read the counters, the version and
        this message's marker; compute the new counters; write them together
        with the marker in one check-and-mutate that succeeds only if the
        version is still the one read. A lost race re-reads and retries; a
        marker already present means the message was applied before.
        """
        from google.cloud.bigtable.data import SetCell, row_filters

        key = update.profile_key.encode("utf-8")
        marker = update.message_id.encode("utf-8")
        read_filter = row_filters.RowFilterUnion([
            row_filters.RowFilterChain([row_filters.FamilyNameRegexFilter(FAMILY), row_filters.CellsColumnLimitFilter(1)]),
            row_filters.RowFilterChain([row_filters.FamilyNameRegexFilter(DEDUPE_FAMILY),
                                        row_filters.ColumnQualifierRegexFilter(_regex_literal(marker))]),
        ])
        timeouts = {"operation_timeout": max(5.0, self.settings.bigtable_operation_timeout_seconds)}
        for _ in range(_MAX_CAS_ATTEMPTS):
            try:
                row = self._table.read_row(key, row_filter=read_filter, **timeouts)
                cells: dict[str, bytes] = {}
                if row is not None:
                    for cell in row:
                        if cell.family == DEDUPE_FAMILY and cell.qualifier == marker:
                            return "duplicate"
                        if cell.family == FAMILY:
                            cells[cell.qualifier.decode()] = cell.value
                new = apply_update(cells, update, int(time.time() * 1000))
                mutations = [SetCell(FAMILY, name, value) for name, value in new.items()]
                mutations.append(SetCell(DEDUPE_FAMILY, marker, b"1"))
                version_column = row_filters.RowFilterChain([
                    row_filters.FamilyNameRegexFilter(FAMILY),
                    row_filters.ColumnQualifierRegexFilter(b"^version$"),
                    row_filters.CellsColumnLimitFilter(1),
                ])
                if "version" in cells:
                    predicate = row_filters.RowFilterChain([version_column, row_filters.LiteralValueFilter(cells["version"])])
                    applied = self._table.check_and_mutate_row(key, predicate, true_case_mutations=mutations, **timeouts)
                else:
                    applied = not self._table.check_and_mutate_row(key, version_column, false_case_mutations=mutations, **timeouts)
            except Exception as exc:  # noqa: BLE001
                raise TransientError(f"bigtable update failed: {type(exc).__name__}") from exc
            if applied:
                return "applied"
        raise TransientError("bigtable update lost the compare-and-set race too often; will be redelivered")


def _regex_literal(value: bytes) -> bytes:
    """An RE2 pattern matching exactly ``value``."""
    out = bytearray(b"^")
    for byte in value:
        char = bytes([byte])
        out += char if char.isalnum() else b"\\x%02x" % byte
    return bytes(out + b"$")


def load_profiles(settings: Settings, profiles: dict[tuple[str, str], Profile]) -> int:
    """Create the table if needed and write ``profiles`` ((tenant, address) -> Profile); returns the count."""
    ensure_table(settings)
    store = ProfileStore(settings)
    try:
        return store.write((tenant, address, profile) for (tenant, address), profile in profiles.items())
    finally:
        store.close()


def ensure_table(settings: Settings) -> None:
    """Create the profile table with its column families, if it does not exist."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud.bigtable import Client, column_family

    client = Client(project=settings.project_id, admin=True)
    table = client.instance(settings.bigtable_instance).table(settings.profile_table)
    import datetime

    families = {
        FAMILY: column_family.MaxVersionsGCRule(1),
        DEDUPE_FAMILY: column_family.GCRuleUnion([
            column_family.MaxAgeGCRule(datetime.timedelta(seconds=settings.dedupe_ttl_seconds)),
            column_family.MaxVersionsGCRule(1),
        ]),
    }
    try:
        table.create(column_families=families)
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
