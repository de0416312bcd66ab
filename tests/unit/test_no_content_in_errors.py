"""Error paths carry no email content: dead-letter attributes, logs, CLI records.

Every hostile input (the kinds of ../shared/cases, ``fuzz.hostile_variants``
and fuzz mutations of the shipped emails) is driven through the scoring
worker as it arrives from Pub/Sub, scored and in each way it can be
rejected (no tenant, not an email, data not base64, no message object,
attributes not an object, claim-check reference outside the store or not
matching its hash), and through ``mailscore score``. Whatever comes out,
apart from the dead-letter payload itself (the email, kept on purpose so it
can be replayed), must hold none of the input's addresses or subjects:
the dead-letter ``reason``/``stage``/``detail`` attributes, the verdict,
the log lines, the CLI's JSON records (but their ``file``, the path given)
and its stderr. How matches are made: tests/leakscan.py.

A static check backs this up: every ``InvalidMessage`` raised in
``shared/mailscore`` has a fixed detail string (at most the name of an
exception type interpolated), so no future input can put text there.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import leakscan
from conftest import CASES_DIR, ROOT, TRAIN_DIR
from mailscore import claimcheck, fuzz
from mailscore.claimcheck import ObjectStore
from mailscore.logs import JsonFormatter
from mailscore.scoring import Scorer
from mailscore.worker import Worker

SHARED = ROOT / "shared" / "mailscore"
# Every rejection a hostile input is driven into below; each must be seen at least once.
REJECTIONS = {"missing_tenant", "not_an_email", "data_not_base64", "envelope_invalid", "attributes_invalid",
              "claim_check_outside_store", "claim_check_corrupt"}


def hostile_inputs() -> list[tuple[str, bytes, dict | None]]:
    """(name, raw email, push envelope or None): the shared cases, generated variants, mutations."""
    inputs: list[tuple[str, bytes, dict | None]] = []
    if CASES_DIR.is_dir():
        for path in sorted(CASES_DIR.iterdir()):
            if path.suffix == ".eml":
                inputs.append((f"case-{path.stem}", path.read_bytes(), None))
            elif path.suffix == ".json":
                envelope = json.loads(path.read_bytes())
                inputs.append((f"case-{path.stem}", base64.b64decode(envelope["message"]["data"]), envelope))
    for i, (kind, raw) in enumerate(fuzz.hostile_variants(random.Random(11), 42)):
        inputs.append((f"variant-{i:02d}-{kind}", raw, None))
    rng = random.Random(12)
    seeds = [p.read_bytes() for p in sorted(TRAIN_DIR.rglob("*.eml"))]
    for i in range(40):
        kind, raw = fuzz.mutate(rng.choice(seeds), rng)
        inputs.append((f"mutation-{i:02d}-{kind}", raw, None))
    return inputs


INPUTS = hostile_inputs()


class RecordingPublisher:
    """Stands in for the Pub/Sub publisher: keeps (topic, data, attributes)."""

    class _Done:
        def result(self, timeout=None):
            return "1"

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict]] = []

    def publish(self, topic, data, **attributes):
        self.published.append((topic.rsplit("/", 1)[-1], data, attributes))
        return self._Done()


@pytest.fixture
def captured_logs():
    """Everything mailscore logs, formatted as in production (JSON lines), at DEBUG."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("mailscore")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _push(raw: bytes, attributes, message_id: str = "4242") -> dict:
    return {"message": {"data": base64.b64encode(raw).decode("ascii"), "attributes": attributes, "messageId": message_id}}


def _deliveries(raw: bytes, envelope: dict | None, store: ObjectStore, outside: Path) -> list[tuple[str, dict]]:
    """The ways one input reaches the worker: scored, and each rejection (name, CloudEvent data)."""
    ids = {"tenant": "acme", "message_id": "m-1"}
    stored, digest = store.put("acme", raw)
    outside.write_bytes(raw)
    first = _push(raw, ids) if envelope is None else {**envelope, "message": {**envelope["message"], "attributes": ids}}
    text = raw.decode("latin-1")
    head, sep, body = raw.partition(b"\n\n")
    return [
        ("scored", first),
        ("scored_claim_check", _push(stored.encode(), {**ids, claimcheck.ATTR_URI: stored, claimcheck.ATTR_SHA: digest})),
        ("missing_tenant", envelope if envelope is not None else _push(raw, {"message_id": "m-1"})),
        ("not_an_email", _push(b"\x89PNG\r\n\x1a\n\x00" + (body if sep else raw), ids)),
        ("data_not_base64", {"message": {"data": text + "!", "attributes": ids}}),
        ("envelope_invalid", {"email": text, "subscription": "s"}),
        ("attributes_invalid", {"message": {"data": base64.b64encode(raw).decode("ascii"), "attributes": text}}),
        ("claim_check_outside_store", _push(b"ref", {**ids, claimcheck.ATTR_URI: outside.as_uri(), claimcheck.ATTR_SHA: digest})),
        ("claim_check_corrupt", _push(b"ref", {**ids, claimcheck.ATTR_URI: stored, claimcheck.ATTR_SHA: "0" * 64})),
    ]


def test_worker_outputs_hold_no_input_content(settings, model, tmp_path, captured_logs):
    store = ObjectStore(str(tmp_path / "claims"))
    publisher = RecordingPublisher()
    worker = Worker(settings, Scorer(settings, model, None), publisher, claim_store=store)
    findings: list[str] = []
    reasons: set[str] = set()
    verdicts = 0
    for name, raw, envelope in INPUTS:
        secrets = leakscan.secrets_of(raw)
        for way, event in _deliveries(raw, envelope, store, tmp_path / "outside.eml"):
            publisher.published.clear()
            captured_logs.seek(0)
            captured_logs.truncate()
            result = worker.handle_event(event)
            outputs = {"returned record": json.dumps(result, ensure_ascii=False, default=str),
                       "log lines": captured_logs.getvalue()}
            for topic, data, attributes in publisher.published:
                outputs[f"{topic} attributes"] = json.dumps(attributes, ensure_ascii=False)
                if topic != settings.dead_letter_topic:  # the dead-letter payload is the email, for replay
                    outputs[f"{topic} data"] = data.decode("utf-8", "replace")
                else:
                    reasons.add(attributes["reason"])
                    assert attributes["detail"] and attributes["stage"], f"{name}/{way}: dead letter without its why"
            verdicts += sum(1 for topic, _, _ in publisher.published if topic == settings.verdict_topic)
            assert len(publisher.published) == 1, f"{name}/{way}: expected one verdict or one dead letter"
            for where, text in outputs.items():
                findings.extend(leakscan.describe(f"{name}/{way}: {where}", leakscan.find(secrets, text)))
    assert findings == [], "input addresses/subjects in the worker's outputs (see the inputs and outputs named)"
    missing = sorted(REJECTIONS - reasons)
    assert missing == [], "some rejections were never exercised"
    assert verdicts >= len(INPUTS)  # each input was scored at least by value


def test_cli_error_records_and_stderr_hold_no_input_content(model_dir, tmp_path):
    files: list[tuple[Path, int]] = []  # (file given to the CLI, index of the email whose content must not show)
    secrets_by_input = [leakscan.secrets_of(raw) for _, raw, _ in INPUTS] + [leakscan.Secrets()]

    def add(name: str, data: bytes, index: int) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        files.append((path, index))

    for i, (_, raw, envelope) in enumerate(INPUTS):
        add(f"{i:03d}.eml", raw, i)
        if len(raw) > 200_000:  # the giant fuzz mutations: once is enough (the rejections below cost per byte)
            continue
        text = raw.decode("latin-1")
        add(f"{i:03d}-body.eml", b"\x89PNG\r\n\x1a\n\x00" + raw.partition(b"\n\n")[2], i)
        add(f"{i:03d}-no-tenant.json", json.dumps(envelope or _push(raw, {"message_id": "m"})).encode(), i)
        add(f"{i:03d}-not-base64.json", json.dumps({"message": {"data": text + "!", "attributes": {"tenant": "t"}}}).encode(), i)
        add(f"{i:03d}-not-json.json", b"{" + raw, i)
        add(f"{i:03d}-no-message.json", json.dumps({"message": text}).encode(), i)
    add("empty.eml", b"", len(INPUTS))
    done = subprocess.run([sys.executable, "-m", "mailscore.cli", "score", "--model-dir", str(model_dir),
                           *(str(path) for path, _ in files)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "MAILSCORE_LOG_LEVEL": "DEBUG"}, timeout=300)
    assert done.returncode == 1  # some inputs were rejected
    lines = done.stdout.splitlines()
    assert len(lines) == len(files)
    findings: list[str] = []
    errors: set[str] = set()
    everything = leakscan.Secrets()
    for secrets in secrets_by_input:
        everything.update(secrets)
    for line, (path, index) in zip(lines, files):
        record = json.loads(line)
        assert record.pop("file") == str(path)
        errors.add(record.get("error", "scored"))
        secrets = secrets_by_input[index]
        findings.extend(leakscan.describe(f"stdout record of {path.name}", leakscan.find(secrets, json.dumps(record))))
    findings.extend(leakscan.describe("stderr", leakscan.find(everything, done.stderr)))
    assert findings == [], "input addresses/subjects in the CLI's output (see the files named)"
    assert "Traceback" not in done.stderr
    missing = sorted({"scored", "missing_tenant", "data_not_base64", "envelope_invalid", "not_an_email", "empty_message"} - errors)
    assert missing == [], "some CLI error paths were never exercised"


def _fixed_detail(node: ast.expr) -> bool:
    """A string literal, or an f-string whose only values are ``type(...).__name__``."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                value = part.value
                if not (isinstance(value, ast.Attribute) and value.attr == "__name__"
                        and isinstance(value.value, ast.Call) and getattr(value.value.func, "id", None) == "type"):
                    return False
        return True
    return False


def test_every_invalid_message_detail_is_a_fixed_string():
    raised = []
    for path in sorted(SHARED.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "InvalidMessage":
                detail = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "detail"), None)
                reason = node.args[0] if node.args else None
                raised.append((f"{path.name}:{node.lineno}", detail is not None and _fixed_detail(detail),
                               isinstance(reason, ast.Constant) and isinstance(reason.value, str)))
    assert len(raised) >= 20  # the walk found the raise sites
    assert [where for where, fixed, _ in raised if not fixed] == [], "an InvalidMessage detail is built from data"
    assert [where for where, _, code in raised if not code] == [], "an InvalidMessage reason is not a fixed code"


def test_the_static_check_rejects_interpolated_content():
    assert _fixed_detail(ast.parse('"no header block"', mode="eval").body)
    assert _fixed_detail(ast.parse('f"expected bytes, got {type(raw).__name__}"', mode="eval").body)
    assert not _fixed_detail(ast.parse('f"bad subject {subject}"', mode="eval").body)
    assert not _fixed_detail(ast.parse('"bad header: " + value', mode="eval").body)
    assert not _fixed_detail(ast.parse("str(exc)", mode="eval").body)


class _FailingScorer:
    """A scorer with a bug whose exception message quotes the input, as stdlib errors can."""

    history = None

    def score(self, raw, **kwargs):
        first_line = raw.split(b"\n", 1)[0].decode("latin-1")
        raise ValueError(f"cannot handle {first_line!r}")


def test_an_unexpected_failure_escapes_the_handler_without_the_input(settings, captured_logs):
    """What escapes the handler is logged by functions-framework with its traceback: no content in it."""
    import traceback

    raw = b"From: Dana Q <dana.q@sender-one.example>\nSubject: Salary review for all staff\n\nhello\n"
    secrets = leakscan.secrets_of(raw)
    worker = Worker(settings, _FailingScorer(), RecordingPublisher())
    with pytest.raises(Exception) as raised:
        worker.handle_event(_push(raw, {"tenant": "acme", "message_id": "m-1"}))
    printed = "".join(traceback.format_exception(raised.value))  # what a logger prints for it
    assert "ValueError" in printed  # the type still says what went wrong
    assert leakscan.find(secrets, printed) == {"address": 0, "subject": 0}, "the escaping exception quotes the input"
    assert leakscan.find(secrets, captured_logs.getvalue()) == {"address": 0, "subject": 0}
    logged = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert [(e["message"], e["error"]) for e in logged] == [("unexpected scoring failure", "ValueError")]
    assert logged[0]["at"].endswith("in score") and ".py:" in logged[0]["at"]  # where, for whoever debugs it
