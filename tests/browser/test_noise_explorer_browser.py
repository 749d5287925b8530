"""Issue 7: the notebook-06 noise explorer works in a real browser.

JupyterLab (isolated, 127.0.0.1) + headless Chromium via Playwright: open a fixture notebook that
calls ``ood_helpers.teaching.widgets.noise_explorer`` on a tiny detector, run all cells, then move the
severity slider with the keyboard and change the noise family, and check that the score text and
the drawn figure follow. Screenshots after each step go to ``screenshots/`` (ignored by git).

Run: ``.venv/bin/python -m pytest tests/browser -m browser -q``
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser

NOTEBOOK = Path(__file__).resolve().parent / "noise_explorer_fixture.ipynb"
TIMEOUT_MS = 60_000  # Playwright's default 5 s is too short for a first render on 2 shared cores
FIRST_RENDER_MS = 120_000  # the first cell fits the detector
KERNEL_TIMEOUT = 120  # s
SCORE = re.compile(r"score (-?\d+\.\d+)")


def wait_for_kernel(server, notebook: str, timeout: float = KERNEL_TIMEOUT) -> dict:
    """Poll /api/sessions until the notebook's kernel is idle and the page is connected to it.

    JupyterLab's status bar says "Idle" before any kernel exists, and running cells then opens a
    modal "Select Kernel" dialog; the server's own view of the session is the reliable signal.
    """
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        for session in server.api("/api/sessions"):
            if session.get("path", "").endswith(notebook) and session.get("kernel"):
                seen = session["kernel"]
                if seen.get("execution_state") == "idle" and seen.get("connections", 0) >= 1:
                    return seen
        time.sleep(0.25)
    raise AssertionError(f"no idle, connected kernel for {notebook} after {timeout} s (last seen: {seen})\n"
                         f"{server.log_tail()}")


def score_of(text: str) -> float:
    match = SCORE.search(text)
    assert match, f"no score in the widget text {text!r}"
    return float(match.group(1))


def test_noise_explorer_in_jupyterlab(chromium_path, chromium_args, screenshot_dir, jupyter_lab, hard_timeout):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    notebook = jupyter_lab.copy_notebook(NOTEBOOK)
    foreign: list[str] = []
    started = time.monotonic()
    shots = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=chromium_args,
                                             timeout=TIMEOUT_MS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            page = context.new_page()

            def check_host(url: str):
                if urlparse(url).hostname not in (None, "", "127.0.0.1"):
                    foreign.append(url)

            page.on("request", lambda request: check_host(request.url))
            page.on("websocket", lambda socket: check_host(socket.url))

            def shot(name: str, whole_page: bool = False):
                """The explorer widget alone (or the whole page, e.g. on failure) as a PNG."""
                path = screenshot_dir / f"noise_explorer_{len(shots)}_{name}.png"
                target = page.locator(".ood-noise-explorer")
                if whole_page or target.count() == 0:
                    page.screenshot(path=str(path), timeout=TIMEOUT_MS)
                else:
                    target.first.screenshot(path=str(path), timeout=TIMEOUT_MS)
                shots.append(path)

            try:
                page.goto(f"{jupyter_lab.url}/lab/tree/{notebook}?token={jupyter_lab.token}",
                          wait_until="domcontentloaded")
                expect(page.locator(".jp-Notebook").first).to_be_visible()
                page.wait_for_function("() => !!(window.jupyterapp && window.jupyterapp.commands)",
                                       timeout=TIMEOUT_MS)
                wait_for_kernel(jupyter_lab, notebook)
                # fire and forget: never await a command's promise that a dialog could block
                page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

                explorer = page.locator(".ood-noise-explorer")
                score_text = explorer.locator(".ood-score")
                handle = explorer.locator(".ood-severity.widget-slider .noUi-handle")
                readout = explorer.locator(".ood-severity .widget-readout")
                image = explorer.locator(".ood-figure.widget-output img")
                expect(score_text).to_contain_text("gaussian noise at severity 0.00", timeout=FIRST_RENDER_MS)
                expect(image).to_be_visible()
                expect(readout).to_have_text("0.00")
                first_text, first_src = score_text.inner_text(), image.get_attribute("src")
                assert "higher = more out-of-distribution" in first_text
                assert "of in-distribution images score lower" in first_text
                assert first_src and first_src.startswith("data:image/png")
                shot("page", whole_page=True)
                shot("initial")

                handle.focus()
                text, src = first_text, first_src
                for step in (1, 2, 3):
                    handle.press("ArrowRight")
                    severity = f"{0.05 * step:.2f}"
                    expect(readout).to_have_text(severity)
                    expect(score_text).to_contain_text(f"gaussian noise at severity {severity}")
                    expect(image).not_to_have_attribute("src", src)  # a new figure was drawn
                    text, src = score_text.inner_text(), image.get_attribute("src")
                    shot(f"gaussian_{severity}")
                assert score_of(text) != score_of(first_text), (first_text, text)

                explorer.locator(".ood-family select").select_option("blur")
                expect(score_text).to_contain_text("blur noise at severity 0.15")
                expect(image).not_to_have_attribute("src", src)
                blur_text = score_text.inner_text()
                assert score_of(blur_text) != score_of(text), (text, blur_text)
                shot("blur_0.15")
            except BaseException:
                try:
                    shot("failure", whole_page=True)
                except Exception:
                    pass
                print(f"JupyterLab log tail:\n{jupyter_lab.log_tail()}")
                raise
        finally:
            browser.close()

    assert not foreign, f"the page contacted hosts other than 127.0.0.1: {foreign[:5]}"
    print(f"browser part took {time.monotonic() - started:.1f} s; screenshots: {[p.name for p in shots]}")
