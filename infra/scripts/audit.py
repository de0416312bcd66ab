"""`make audit`: pip-audit the pinned requirements, and say plainly what it found or why it could not.

Runs pip-audit (from its own .venv-audit) on the requirement files, writes
its JSON report, and prints one summary: packages resolved, how many were
audited against the vulnerability service, known vulnerabilities. Exit
codes: 0 every package audited and none vulnerable; 1 known
vulnerabilities; 2 pip-audit could not run (e.g. the service is
unreachable); 3 the audit is incomplete (some or all packages could not be
looked up: no answer is not a clean bill of health).

Usage: python infra/scripts/audit.py [--service pypi|osv] [--out FILE] REQUIREMENTS...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

EXIT_CLEAN, EXIT_VULNERABLE, EXIT_NOT_RUN, EXIT_INCOMPLETE = 0, 1, 2, 3


def _skip_kind(reason: str) -> str:
    """A skip reason without the package's own name and version, to count alike reasons together."""
    return reason.split(":", 1)[0].strip() or "unknown"


def summarise(report: dict, service: str) -> tuple[int, list[str]]:
    """(exit code, lines to print) for a pip-audit JSON report."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    n_vulns = sum(len(d["vulns"]) for d in vulnerable)
    lines = [f"audit: {len(deps)} packages resolved from the requirements, {len(audited)} audited against "
             f"the {service} vulnerability service, {len(skipped)} not audited, {n_vulns} known vulnerabilities"]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            lines.append(f"audit:   {dep['name']} {dep.get('version', '?')}: {vuln.get('id', '?')} (fixed in {fixes})")
    if skipped:
        for kind, count in Counter(_skip_kind(d["skip_reason"]) for d in skipped).most_common():
            lines.append(f"audit:   not audited ({count}): {kind}")
    if not deps:
        lines.append("audit: NOT RUN: pip-audit resolved no packages")
        return EXIT_NOT_RUN, lines
    if vulnerable:
        lines.append("audit: FAILED: known vulnerabilities above; raise the pins to a fixed version")
        return EXIT_VULNERABLE, lines
    if not audited:
        lines.append(f"audit: NOT RUN: the {service} service answered for none of the {len(deps)} packages, so "
                     "nothing was checked. With --vulnerability-service pypi, pip-audit reads the PyPI JSON API "
                     "page of each pinned release (/pypi/NAME/VERSION/json); where that page is not served "
                     "(some mirrors and proxies serve only the index), every release looks 'not found'.")
        return EXIT_INCOMPLETE, lines
    if skipped:
        lines.append(f"audit: INCOMPLETE: {len(skipped)} of {len(deps)} packages were not audited")
        return EXIT_INCOMPLETE, lines
    lines.append("audit: OK: no known vulnerabilities in the pinned requirements")
    return EXIT_CLEAN, lines


def _last_error_line(stderr: str) -> str:
    """The most telling line of pip-audit's stderr (its exception, without the traceback)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:400]
    return lines[-1][:400] if lines else "no output"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("requirements", nargs="+")
    parser.add_argument("--service", default="pypi", choices=("pypi", "osv"))
    parser.add_argument("--out", default="out/audit.json")
    parser.add_argument("--timeout", type=int, default=30, help="pip-audit's socket timeout, seconds")
    parser.add_argument("--module", default="pip_audit", help=argparse.SUPPRESS)  # tests: a pip-audit that fails
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    argv_ = [sys.executable, "-m", args.module, "--vulnerability-service", args.service, "--format", "json",
             "--output", str(out), "--progress-spinner", "off", "--timeout", str(args.timeout)]
    for path in args.requirements:
        argv_ += ["-r", path]
    print(f"audit: pip-audit ({args.service}) on {', '.join(args.requirements)} ...", flush=True)
    try:
        done = subprocess.run(argv_, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        print("audit: NOT RUN: pip-audit did not finish within 15 minutes", file=sys.stderr)
        return EXIT_NOT_RUN
    if done.returncode not in (0, 1) or not out.exists():
        print(f"audit: NOT RUN: pip-audit failed (exit {done.returncode}): {_last_error_line(done.stderr)}",
              file=sys.stderr)
        print("audit: the vulnerability service or PyPI may be unreachable from this machine", file=sys.stderr)
        return EXIT_NOT_RUN
    code, lines = summarise(json.loads(out.read_text()), args.service)
    print("\n".join(lines), file=sys.stderr if code else sys.stdout)
    print(f"audit: pip-audit's report: {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
