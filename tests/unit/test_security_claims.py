"""What the README's Security section promises, held to the code.

* Claim-check fetches are confined to the configured location: a reference
  elsewhere (another folder, ``..``, a symlink out, another bucket or
  prefix) is dead-lettered as ``claim_check_outside_store`` and never read.
* Nothing is deserialised with a format that can run code (pickle and kin):
  the model is XGBoost's UBJ file, checked against the sha256 in its JSON
  card (the hash check itself: test_model_and_scoring).
"""

from __future__ import annotations

import ast
import os

import pytest

from conftest import ROOT
from mailscore.claimcheck import ObjectStore, fetch
from mailscore.errors import InvalidMessage
from mailscore.model import CARD_FILE, MODEL_FILE


@pytest.fixture
def local_store(tmp_path):
    root = tmp_path / "claims"
    store = ObjectStore(str(root))
    secret = tmp_path / "outside" / "secret.eml"
    secret.parent.mkdir()
    secret.write_bytes(b"From: x@outside.example\n\nnot yours\n")
    return store, root, secret


def test_a_reference_inside_the_local_store_is_fetched(local_store):
    store, _, _ = local_store
    uri, digest = store.put("acme", b"From: a@b.example\n\nhi\n")
    assert fetch(store, {"claim_check": uri, "claim_check_sha256": digest}) == b"From: a@b.example\n\nhi\n"


def test_references_outside_the_local_store_are_refused(local_store):
    store, root, secret = local_store
    (root / "acme").mkdir(parents=True, exist_ok=True)
    os.symlink(secret, root / "acme" / "link.eml")
    for uri in (secret.as_uri(), str(secret), f"file://{root}/../outside/secret.eml", f"{root}/acme/../../outside/secret.eml",
                (root / "acme" / "link.eml").as_uri(), f"file://{root}-sibling/x.eml", "gs://bucket/x.eml", "/etc/hostname"):
        with pytest.raises(InvalidMessage) as refused:
            store.get(uri)
        assert refused.value.reason == "claim_check_outside_store", f"reference kind not refused: #{uri.count('/')}"


def test_references_outside_the_bucket_prefix_are_refused_before_any_download():
    store = ObjectStore("gs://claims-bucket/payloads")  # a download would need credentials: none is attempted
    for uri in ("gs://other-bucket/payloads/a.eml", "gs://claims-bucket/payloads-evil/a.eml", "gs://claims-bucket/a.eml",
                "gs://claims-bucket/payloads/../secrets/a.eml", "file:///etc/hostname", "/etc/hostname"):
        with pytest.raises(InvalidMessage) as refused:
            store.get(uri)
        assert refused.value.reason == "claim_check_outside_store"
    assert store._gcs is None  # no client was ever made


UNSAFE = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def test_no_code_executing_deserialisers_in_what_is_deployed():
    sources = sorted((ROOT / "shared" / "mailscore").glob("*.py")) + sorted((ROOT / "functions").glob("*/main.py"))
    assert len(sources) > 20
    found = []
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("eval", "exec"):
                names = [node.func.id]
            elif isinstance(node, ast.Attribute) and node.attr in ("load", "unsafe_load") and getattr(node.value, "id", None) == "yaml":
                names = ["yaml.load"]
            found += [f"{path.name}:{node.lineno} {name}" for name in names if name in UNSAFE | {"eval", "exec", "yaml.load"}]
    assert found == []


def test_the_model_is_read_from_ubj_with_a_json_card():
    assert MODEL_FILE == "model.ubj" and CARD_FILE == "model_card.json"
