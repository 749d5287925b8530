"""The book as a reader sees it: a crawl of the built site from index.html in headless Chromium.

Every page loads without console errors or failed requests; every image has a non-zero natural
size; every math element is typeset by MathJax (no error boxes); every internal link and anchor
resolves; every notebook is at most two clicks from the start page. External links are listed
(screenshots/site_external_links.txt), never fetched: Chromium can reach 127.0.0.1 only.
Screenshots of the start page and notebook 02 at 1280x800 go to screenshots/ (ignored by git).
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "_build" / "html"
pytestmark = pytest.mark.browser

NOTEBOOKS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CLICKS = 2
VIEWPORT = {"width": 1280, "height": 800}

# what one page reports, once its scripts (MathJax included) are done
PAGE_FACTS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = [...document.images].map(i => ({src: i.currentSrc || i.src, w: i.naturalWidth, h: i.naturalHeight}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(a => a.name));
  const math = document.querySelectorAll('.math, span.math, div.math').length;
  const typeset = document.querySelectorAll('mjx-container').length;
  const mathErrors = document.querySelectorAll('mjx-merror').length;
  // clipped: a code block or table whose content is wider than its box (hidden behind a scroll bar)
  const clipped = [...document.querySelectorAll('article pre, article table')]
      .filter(e => e.scrollWidth > e.clientWidth + 1 ||
                   (e.parentElement && e.parentElement.scrollWidth > e.parentElement.clientWidth + 1))
      .map(e => e.tagName + ': ' + (e.textContent || '').trim().slice(0, 60));
  return {images, links, ids, math, typeset, mathErrors, clipped};
}"""


def _page_kind(url: str, root: str) -> str:
    path = urlparse(url).path
    if not url.startswith(root):
        return "external"
    if path.endswith(".html") or path.endswith("/"):
        return "page"
    return "file"


def test_the_built_book_reads_well_in_a_browser(site_url, chromium_path, chromium_args, screenshot_dir, hard_timeout):
    from playwright.sync_api import sync_playwright

    start = time.monotonic()
    root, index = site_url, urljoin(site_url, "index.html")
    depth = {index: 0}
    queue, facts, problems = deque([index]), {}, []
    external, files = set(), set()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path, args=chromium_args, headless=True)
        context = chromium.new_context(viewport=VIEWPORT)
        page = context.new_page()
        current = {"url": None}
        page.on("console", lambda m: m.type == "error" and problems.append(f"{current['url']}: console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{current['url']}: script error: {e}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(f"{current['url']}: HTTP {r.status}: {r.url}"))
        page.on("requestfailed", lambda r: problems.append(f"{current['url']}: request failed: {r.url} ({r.failure})"))
        try:
            while queue:
                url = queue.popleft()
                current["url"] = url
                response = page.goto(url, wait_until="load")
                if response is None or response.status != 200:
                    problems.append(f"{url}: HTTP {response and response.status}")
                    continue
                facts[url] = found = page.evaluate(PAGE_FACTS)
                for link in found["links"]:
                    target, _ = urldefrag(link)
                    kind = _page_kind(target, root)
                    if kind == "external":
                        external.add(link)
                    elif kind == "file":
                        files.add(target)
                    elif target not in depth and "/_sources/" not in target:
                        depth[target] = depth[url] + 1
                        queue.append(target)
                if url == index:
                    page.screenshot(path=str(screenshot_dir / "site_index.png"))
                elif url.endswith("notebooks/02_resnet_autoencoder.html"):
                    page.screenshot(path=str(screenshot_dir / "site_02_resnet_autoencoder.png"))
                    page.screenshot(path=str(screenshot_dir / "site_02_full.png"), full_page=True)
        finally:
            context.close()
            chromium.close()

    # images: every one decoded with a size
    images = [(url, image) for url, found in facts.items() for image in found["images"]]
    problems += [f"{url}: image without a size: {image['src'][:120]}" for url, image in images
                 if not (image["w"] > 0 and image["h"] > 0)]
    # math: every math element typeset, no MathJax error box
    math = sum(found["math"] for found in facts.values())
    for url, found in facts.items():
        if found["typeset"] < found["math"] or found["mathErrors"]:
            problems.append(f"{url}: math not rendered ({found['typeset']} of {found['math']} typeset, "
                            f"{found['mathErrors']} errors)")
        problems += [f"{url}: clipped at 1280x800: {what}" for what in found["clipped"][:5]]
    # links and anchors: pages were loaded (HTTP 200 above); files answer; every #anchor exists
    for target in sorted(files):
        try:
            with urllib.request.urlopen(urllib.request.Request(target, method="HEAD"), timeout=10):
                pass
        except urllib.error.URLError as err:
            problems.append(f"broken link to a file: {target} ({err})")
    internal = anchors = 0
    for url, found in facts.items():
        for link in found["links"]:
            target, fragment = urldefrag(link)
            if _page_kind(target, root) == "external":
                continue
            internal += 1
            if fragment and target in facts:
                anchors += 1
                if fragment not in facts[target]["ids"]:
                    problems.append(f"{url}: link to a missing anchor {link}")
    # every notebook within two clicks of the start page
    for name in NOTEBOOKS:
        page_url = urljoin(root, f"notebooks/{name}.html")
        if depth.get(page_url, 99) > MAX_CLICKS:
            problems.append(f"notebook {name} is {depth.get(page_url, 'not')} clicks from the start page")
    (screenshot_dir / "site_external_links.txt").write_text("\n".join(sorted(external)) + "\n")
    seconds = time.monotonic() - start
    print(f"\nsite check: {len(facts)} pages, {len(images)} images, {math} math elements, {internal} internal links "
          f"({anchors} to anchors, {len(files)} files), {len(external)} external links listed, not fetched "
          f"(screenshots/site_external_links.txt), in {seconds:.1f} s")
    assert len(facts) >= len(NOTEBOOKS) + 5 and images and math, "the crawl found too little: is the site built?"
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:40])


def test_every_notebook_page_offers_launch_buttons_a_download_and_folded_solutions(site_url):
    """The per-notebook promises, read from the built HTML (no browser needed)."""
    import tomllib  # not ood_helpers.colab.repository_url: importing the package would import torch

    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["repository"]
    owner_repo = urlparse(url).path.strip("/")
    for name in NOTEBOOKS:
        html = (SITE / "notebooks" / f"{name}.html").read_text()
        assert (f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{name}.ipynb"
                in html), name
        assert f"https://mybinder.org/v2/gh/{owner_repo}/main?urlpath=lab/tree/notebooks/{name}.ipynb" in html, name
        assert f"_sources/notebooks/{name}.ipynb" in html, f"{name}: no .ipynb download"
        assert (SITE / "_sources" / "notebooks" / f"{name}.ipynb").is_file()
        head = html.split("Learning objectives", 1)
        assert len(head) == 2 and "Estimated time" in head[1][:4000], f"{name}: objectives and time at the top"
        assert html.count("<details") >= 1 and "<summary" in html, f"{name}: solutions are not folded"
