"""The HTML report in a real browser: Debian's Chromium, headless, driven by Playwright (which
never downloads a browser here; .ci/run installs Chromium). The page must render with every
figure decoded, no console error, no failed request and nothing fetched from outside the file
(the report is self-contained). The screenshot is kept beside the run folder."""

from __future__ import annotations

import shutil

import pytest

from robustlr.config import from_mapping
from robustlr.runs.folder import execute
from tests.helpers import tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# machine's closed network refuses (the environment notes); a fresh profile per launch.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    config = from_mapping(tiny(
        schedules=["constant", "cosine", "step(milestones=[0.5], gamma=0.1)"],
        regimes=["standard", "pgd_at(eps=0.1, steps=2)"], seeds=[0, 1],
        evaluation={"attack": "pgd(eps=0.1, steps=3)", "subset": 32}))
    run_dir = execute(config, out=tmp_path_factory.mktemp("browser") / "run", workers=2,
                      show_progress=False)
    return run_dir / "report.html"


def test_the_report_renders_in_headless_chromium_with_every_figure_and_no_errors(report):
    assert CHROMIUM, "Chromium is missing: .ci/run installs it (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith(("file:", "data:")) else None)
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate("""() => Array.from(document.images).map(i => ({
                src: i.src.slice(0, 22), ok: i.complete && i.naturalWidth > 0,
                width: i.naturalWidth}))""")
            headings = page.locator("h2").all_inner_texts()
            tables = page.locator("table").count()
            shot = report.parent / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert problems == []
    assert outside == [], "the report must be self-contained"
    figures = report.with_name("report.md").read_text().count("![")
    assert len(images) == figures >= 4
    assert all(image["ok"] and image["width"] > 100 for image in images), images
    assert all(image["src"].startswith("data:image/png") for image in images)
    assert "Trade-off frontiers" in headings and tables >= 3
    assert shot.stat().st_size > 50_000
