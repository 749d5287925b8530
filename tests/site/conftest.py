"""Fixtures for the book's browser check: the built site (``make site`` builds _build/html) served on
127.0.0.1, and Debian's Chromium found and launched as tests/browser/conftest.py does (its helpers
are reused, not copied: find_chromium, CHROMIUM_ARGS, and the rule that a missing browser fails
under CI=true instead of skipping)."""
from __future__ import annotations

import functools
import http.server
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SITE = REPO / "_build" / "html"

_spec = importlib.util.spec_from_file_location("ood_browser_conftest", HERE.parent / "browser" / "conftest.py")
browser = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
if not hasattr(browser, "find_chromium"):
    _spec.loader.exec_module(browser)

# the same fixtures as the JupyterLab browser test
chromium_path = browser.chromium_path
chromium_args = browser.chromium_args
screenshot_dir = browser.screenshot_dir
hard_timeout = browser.hard_timeout


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def site_url():
    """The built book served from _build/html on 127.0.0.1 (a free port) for the whole session."""
    if not (SITE / "index.html").is_file():
        message = f"no built site at {SITE}: run `make site` first (`make test-site` builds and checks)."
        if browser._on_ci():
            pytest.fail(message + " CI=true, so this is a failure rather than a skip.", pytrace=False)
        pytest.skip(message)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
