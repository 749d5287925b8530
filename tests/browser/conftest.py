"""Fixtures for the real-browser tests: a headless Chromium, and an isolated JupyterLab on 127.0.0.1.

Only 127.0.0.1 is ever contacted: JupyterLab runs with news, update checks and the PyPI extension
manager off, and Chromium resolves every other host name to nothing.

Chromium: ``$CHROMIUM_PATH``, else /usr/bin/chromium, else ``chromium`` on PATH (Debian's package:
``apt-get install -y chromium``; never ``playwright install``). Without one the tests skip, or fail
when ``CI=true``.
"""
from __future__ import annotations

import faulthandler
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCREENSHOTS = REPO / "screenshots"  # ignored by git
TOKEN = "ood-helpers-browser-test"
SERVER_START_TIMEOUT = 120  # s; 2 shared cores
HARD_TIMEOUT = 300  # s for one whole browser test, server start included

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-default-apps", "--disable-breakpad",
    # every host name but 127.0.0.1 resolves to nothing: the page can reach nothing else
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(reason: str):
    if _on_ci():
        pytest.fail(f"{reason} CI=true, so this is a failure rather than a skip: "
                    f"install it (apt-get install -y chromium; pip install -e '.[test]').", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    """``$CHROMIUM_PATH``, /usr/bin/chromium or ``chromium`` on PATH; None when none is executable."""
    override = os.environ.get("CHROMIUM_PATH")
    candidates = [override] if override else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """``screenshots/`` in the repository root (ignored by git), created on demand."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def chromium_args() -> list[str]:
    return list(CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        where = (f"CHROMIUM_PATH={os.environ['CHROMIUM_PATH']!r} is not an executable file"
                 if os.environ.get("CHROMIUM_PATH") else "no /usr/bin/chromium and no 'chromium' on PATH")
        _unavailable(f"Chromium not found ({where}); install Debian's package: apt-get install -y chromium.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Python playwright is not installed (pip install -e '.[test]').")
    return path


@pytest.fixture
def hard_timeout():
    """Outer limit for one test: SIGALRM raises TimeoutError in the test; if even that cannot get
    through, faulthandler dumps every thread's stack and ends the process a minute later."""
    def expire(signum, frame):
        raise TimeoutError(f"browser test ran past {HARD_TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HARD_TIMEOUT)
    faulthandler.dump_traceback_later(HARD_TIMEOUT + 60, exit=True)
    try:
        yield HARD_TIMEOUT
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class JupyterLab:
    url: str
    token: str
    notebook_dir: Path
    log_path: Path
    process: subprocess.Popen

    def api(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as err:
            return f"(no server log: {err})"

    def copy_notebook(self, source: Path) -> str:
        """Copy a notebook into the server's (temporary) notebook folder; returns its name."""
        shutil.copy(source, self.notebook_dir / source.name)
        return source.name


@pytest.fixture
def jupyter_lab(tmp_path) -> JupyterLab:
    """JupyterLab on 127.0.0.1, a free port and a fixed token, with its own config, runtime,
    settings, workspace and data folders and an empty temporary notebook folder."""
    dirs = {name: tmp_path / name for name in ("config", "runtime", "settings", "workspaces", "data", "notebooks")}
    for folder in dirs.values():
        folder.mkdir()
    notification = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]), JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
               # kernelspecs still resolve: python3 is ipykernel's native kernel (sys.prefix/share/jupyter)
               JUPYTER_DATA_DIR=str(dirs["data"]), PYTHONUNBUFFERED="1")
    port = _free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={dirs['notebooks']}",
               "--ServerApp.terminals_enabled=False",
               "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log_path = tmp_path / "jupyterlab.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, cwd=dirs["notebooks"], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = JupyterLab(f"http://127.0.0.1:{port}", TOKEN, dirs["notebooks"], log_path, process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {process.returncode} at start:\n{server.log_tail()}")
            try:
                server.api("/api/status", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT} s:\n{server.log_tail()}")
                time.sleep(0.25)
        yield server
    finally:
        _stop(server)


def _stop(server: JupyterLab):
    """Shut the server down through its API (which also shuts its kernels down), then make sure."""
    process = server.process
    if process.poll() is None:
        try:
            server.api("/api/shutdown", method="POST", timeout=10)
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                try:
                    os.killpg(process.pid, sig)  # the group this fixture started (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
