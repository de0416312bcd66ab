"""Start and stop the official Pub/Sub and Bigtable emulators on free local ports.

Used by ``make run`` and by the integration tests. When the environment
already names an emulator (``PUBSUB_EMULATOR_HOST``/``BIGTABLE_EMULATOR_HOST``)
that one is used and left running. When a binary is missing,
``EmulatorNotInstalled`` says how to install it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailscore.errors import EmulatorNotInstalled, MailscoreError

INSTALL_HINT = (
    "the Google Cloud CLI emulators are not installed. Install the Cloud SDK "
    "(https://cloud.google.com/sdk/docs/install) and then run "
    "`gcloud components install pubsub-emulator bigtable beta` "
    "(on Debian/Ubuntu with the apt repository: `apt-get install "
    "google-cloud-cli-pubsub-emulator google-cloud-cli-bigtable-emulator openjdk-17-jre-headless`); "
    "or set MAILSCORE_SDK_ROOT to the SDK's root folder"
)


def sdk_root() -> Path | None:
    """The Cloud SDK root: $MAILSCORE_SDK_ROOT, else the one `gcloud` belongs to."""
    explicit = os.environ.get("MAILSCORE_SDK_ROOT")
    if explicit:
        return Path(explicit)
    gcloud = shutil.which("gcloud")
    if gcloud:
        # <root>/bin/gcloud, possibly through a symlink
        return Path(gcloud).resolve().parent.parent
    for guess in ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk"):
        if Path(guess).is_dir():
            return Path(guess)
    return None


def binaries() -> tuple[Path, Path]:
    """(pubsub emulator launcher, cbtemulator) or EmulatorNotInstalled."""
    root = sdk_root()
    if root is None:
        raise EmulatorNotInstalled(INSTALL_HINT)
    pubsub = root / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    bigtable = root / "platform" / "bigtable-emulator" / "cbtemulator"
    missing = [str(p) for p in (pubsub, bigtable) if not p.exists()]
    if missing:
        raise EmulatorNotInstalled(f"{INSTALL_HINT} (missing: {', '.join(missing)})")
    if shutil.which("java") is None:
        raise EmulatorNotInstalled(f"{INSTALL_HINT} (the Pub/Sub emulator needs Java 8+ on PATH)")
    return pubsub, bigtable


def emulators_available() -> str | None:
    """None when both emulators can start here, else the reason they cannot."""
    try:
        binaries()
    except EmulatorNotInstalled as exc:
        return str(exc)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None, name: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise MailscoreError(f"{name or 'process'} exited with code {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise MailscoreError(f"{name or 'process'} did not listen on {host}:{port} within {timeout:.0f}s")


@dataclass
class Emulators:
    """The emulator endpoints in use, and the processes this object started."""

    pubsub_host: str = ""
    bigtable_host: str = ""
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    log_dir: Path | None = None

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.pubsub_host, "BIGTABLE_EMULATOR_HOST": self.bigtable_host}

    def start_bigtable(self, port: int | None = None) -> None:
        _, cbt = binaries()
        port = port or free_port()
        proc = _spawn([str(cbt), "-host", "127.0.0.1", "-port", str(port)], self._log("bigtable"))
        self.processes.append(("bigtable", proc))
        wait_for_port("127.0.0.1", port, 30, proc, "the Bigtable emulator")
        self.bigtable_host = f"127.0.0.1:{port}"

    def start_pubsub(self, port: int | None = None) -> None:
        launcher, _ = binaries()
        port = port or free_port()
        data_dir = tempfile.mkdtemp(prefix="mailscore-pubsub-")
        proc = _spawn(
            [str(launcher), "--host=127.0.0.1", f"--port={port}", f"--dir={data_dir}"], self._log("pubsub")
        )
        self.processes.append(("pubsub", proc))
        wait_for_port("127.0.0.1", port, 60, proc, "the Pub/Sub emulator")
        self.pubsub_host = f"127.0.0.1:{port}"

    def stop(self, name: str | None = None) -> None:
        """Stop the processes this object started (all, or the one called ``name``)."""
        keep = []
        for proc_name, proc in self.processes:
            if name is not None and proc_name != name:
                keep.append((proc_name, proc))
                continue
            stop_process(proc)
        self.processes = keep

    def _log(self, name: str):
        if self.log_dir is None:
            return subprocess.DEVNULL
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / f"{name}-emulator.log", "ab")


def _spawn(argv: list[str], output) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process group started with ``start_new_session``; kill if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def start(log_dir: Path | None = None) -> Emulators:
    """Use the emulators named in the environment, start the others."""
    emulators = Emulators(
        pubsub_host=os.environ.get("PUBSUB_EMULATOR_HOST", ""),
        bigtable_host=os.environ.get("BIGTABLE_EMULATOR_HOST", ""),
        log_dir=log_dir,
    )
    try:
        if not emulators.bigtable_host:
            emulators.start_bigtable()
        if not emulators.pubsub_host:
            emulators.start_pubsub()
    except BaseException:
        emulators.stop()
        raise
    return emulators
