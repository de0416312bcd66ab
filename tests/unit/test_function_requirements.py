"""Every deployed function installs the runtime the shared package imports, at the pinned versions."""

from __future__ import annotations

from conftest import ROOT

RUNTIME = {"functions-framework", "google-cloud-bigtable", "google-cloud-pubsub", "google-re2",
           "google-cloud-storage", "numpy", "publicsuffixlist", "xgboost-cpu"}


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def test_function_requirements_match_the_project_pins():
    project = _pins(ROOT / "requirements.txt")
    functions = sorted(p for p in (ROOT / "functions").iterdir() if (p / "main.py").is_file())
    assert len(functions) >= 2
    for folder in functions:
        pins = _pins(folder / "requirements.txt")
        assert set(pins) == RUNTIME, folder.name
        for name, version in pins.items():
            assert project.get(name) == version, (folder.name, name)
