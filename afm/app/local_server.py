"""Running the app for tests and benchmarks: `streamlit run app.py` on a free loopback port
(127.0.0.1 only), ready when its health endpoint answers, always stopped afterwards; and the
flags headless Chromium needs on these machines."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from afm.paths import CHECKOUT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def app_server(*streamlit_args: str, env: dict | None = None, log: Path | None = None,
               start_timeout: float = 90.0, script: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Yield (url, process) of a fresh app server (of `script`, else app.py); it is terminated
    (then killed) on exit."""
    port = free_port()
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script or CHECKOUT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         *streamlit_args], cwd=CHECKOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() - started > start_timeout:
                raise RuntimeError(f"streamlit did not start (exit {process.poll()}); see {log or 'its output'}")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        if log:
            output.close()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
