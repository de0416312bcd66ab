"""`make audit`'s summary (infra/scripts/audit.py): offline, on pip-audit reports written here.

The one outcome that must never happen is a pass that checked nothing:
packages the service could not look up make the audit fail as incomplete,
and a pip-audit that cannot run at all fails with one line saying why.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "infra" / "scripts" / "audit.py"
_spec = importlib.util.spec_from_file_location("audit_script", SCRIPT)
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)

CLEAN = {"name": "requests", "version": "2.34.2", "vulns": []}
VULNERABLE = {"name": "oldlib", "version": "1.0", "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["1.1"]}]}
SKIPPED = {"name": "numpy", "version": "2.4.6",
           "skip_reason": "Dependency not found on PyPI and could not be audited: numpy (2.4.6)"}


def test_clean_when_every_package_was_audited():
    code, lines = audit.summarise({"dependencies": [CLEAN, CLEAN]}, "pypi")
    assert code == audit.EXIT_CLEAN
    assert lines[0].startswith("audit: 2 packages resolved") and "2 audited" in lines[0] and "0 known" in lines[0]


def test_vulnerabilities_fail_and_are_named_with_their_fix():
    code, lines = audit.summarise({"dependencies": [CLEAN, VULNERABLE]}, "pypi")
    assert code == audit.EXIT_VULNERABLE
    assert any("oldlib 1.0: PYSEC-0000-1 (fixed in 1.1)" in line for line in lines)


def test_nothing_audited_is_not_a_pass():
    code, lines = audit.summarise({"dependencies": [SKIPPED, SKIPPED]}, "pypi")
    assert code == audit.EXIT_INCOMPLETE
    assert "0 audited" in lines[0] and any("NOT RUN" in line for line in lines)
    assert any("not audited (2): Dependency not found on PyPI" in line for line in lines)


def test_partly_audited_is_incomplete():
    code, lines = audit.summarise({"dependencies": [CLEAN, SKIPPED]}, "pypi")
    assert code == audit.EXIT_INCOMPLETE and any("INCOMPLETE: 1 of 2" in line for line in lines)


def test_no_packages_is_not_run():
    assert audit.summarise({"dependencies": []}, "osv")[0] == audit.EXIT_NOT_RUN


def test_a_pip_audit_that_cannot_run_fails_with_one_clear_line(tmp_path):
    # A module that does not exist fails like pip-audit on an unreachable service: no report written.
    done = subprocess.run([sys.executable, str(SCRIPT), "--module", "no_such_pip_audit", "--out", str(tmp_path / "audit.json"),
                           "requirements.txt"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == audit.EXIT_NOT_RUN
    assert "audit: NOT RUN: pip-audit failed" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "audit.json").exists()
