"""The annotation page in a real browser (Chromium through Playwright): marking regions, painting,
undo, saving, reloading, accepting, skipping, the finished screen and the time to the next image.

The session fixture ``browser`` installs Debian's Chromium with apt when it is missing and the
tests run as root; screenshots go to test-artifacts/ (or $TEST_ARTIFACTS)."""
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt
from werkzeug.serving import make_server

from annotate_fixtures import FakeTask, fake_store
from pyro_ebnn.annotate.server import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
NEXT_COMMAND = "pyro-ebnn finetune --config configs/finetune.yaml"
HEATMAP_SECONDS = 0.4  # like a model's explanation: "next" within 300 ms needs the prefetch


def _install_chromium():
    """Debian's Chromium, installed with apt once per test session when missing."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{CHROMIUM} is missing; install it with: apt-get install -y chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' installs playwright")
    _install_chromium()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def _serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def _page(browser, base):
    """A page that records requests leaving the app and script errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.outside, page.errors = [], []
    page.on("request", lambda r: None if r.url.startswith(base) else page.outside.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    try:
        yield page
    finally:
        assert page.outside == [], "the page fetched from outside the app"
        assert page.errors == [], "the page's script failed"
        page.close()


def _inside(segments, segment):
    """(x, y) of the pixel deepest inside a segment."""
    y, x = np.unravel_index(distance_transform_edt(segments == segment).argmax(), segments.shape)
    return int(x), int(y)


def _stroke(shape, start, end, size):
    """The pixels a brush of diameter ``size`` paints from pixel ``start`` to ``end`` (x, y):
    centres within size / 2 of the segment between the two pixel centres."""
    (x0, y0), (x1, y1) = np.add(start, 0.5), np.add(end, 0.5)
    y, x = np.mgrid[:shape[0], :shape[1]] + 0.5
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
    return (x0 + t * dx - x) ** 2 + (y0 + t * dy - y) ** 2 <= (size / 2) ** 2


class _Canvas:
    """Mouse actions on the page's canvas, in image pixels."""

    def __init__(self, page, zoom):
        self.page, self.zoom = page, zoom
        self.box = page.locator("#canvas").bounding_box()

    def at(self, x, y):
        return self.box["x"] + (x + 0.5) * self.zoom, self.box["y"] + (y + 0.5) * self.zoom

    def click(self, x, y):
        self.page.mouse.click(*self.at(x, y))

    def drag(self, start, end):
        self.page.mouse.move(*self.at(*start))
        self.page.mouse.down()
        self.page.mouse.move(*self.at(*end), steps=9)
        self.page.mouse.up()


def _shown(page, index):
    page.wait_for_selector(f"body[data-index='{index}']", timeout=10_000)
    return float(page.locator("#canvas").get_attribute("data-show-ms"))


def _marked(page):
    page.wait_for_function("document.body.dataset.marked !== undefined")
    page.evaluate("() => new Promise(requestAnimationFrame)")
    return int(page.evaluate("document.body.dataset.marked"))


def _pixels(page):
    page.evaluate("() => new Promise(requestAnimationFrame)")
    return page.locator("#canvas").evaluate("c => c.toDataURL()")


def _screenshot(page, name, capsys):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\n  screenshot: {path}")


def test_marking_saving_reloading_and_finishing_in_a_browser(browser, tmp_path, capsys):
    task = FakeTask("grey", indices=(7, 2, 11), delay=HEATMAP_SECONDS)
    store = fake_store(tmp_path / "feedback.sqlite", task)
    segments, candidates = task.regions(7)
    app = create_app(task, store, token="s3cret", next_command=NEXT_COMMAND)
    with _serving(app) as base, _page(browser, base) as page:
        page.goto(f"{base}/?token=s3cret")
        first_ms = _shown(page, 7)
        assert page.locator("#progress-text").inner_text().startswith("0 of 3 answered")
        assert page.locator("#label").inner_text() == "True label: 7 (the prediction is wrong)"
        assert page.locator("#bars li").count() == 5 and "nats" in page.locator("#entropy").inner_text()
        assert page.locator("#canvas").evaluate("c => [c.width, c.height, getComputedStyle(c).imageRendering]") \
            == [448, 448, "pixelated"]
        canvas = _Canvas(page, zoom=16)

        expected = np.zeros(segments.shape, bool)
        for segment in candidates[:2]:                     # two candidate regions, clicked
            canvas.click(*_inside(segments, segment))
            expected |= segments == segment
            assert _marked(page) == expected.sum()
        page.keyboard.press("b")                          # the brush, size 5, one stroke
        page.locator("#brush-size").fill("5")
        assert page.locator("#brush-size-value").inner_text() == "5"
        canvas.drag((3, 5), (12, 5))  # along a row: no pixel centre near the brush edge
        expected |= _stroke(segments.shape, (3, 5), (12, 5), 5)
        assert _marked(page) == expected.sum()
        canvas.click(20, 3)                               # a dab, then undo
        assert _marked(page) > expected.sum()
        page.keyboard.press("z")
        page.keyboard.press("e")                          # the eraser, then undo
        canvas.click(5, 5)
        assert _marked(page) < expected.sum()
        page.locator("#undo").click()
        assert _marked(page) == expected.sum()
        for key in ("h", "o"):                            # explanation and outlines on and off
            drawn = _pixels(page)
            page.keyboard.press(key)
            assert _pixels(page) != drawn
            page.keyboard.press(key)
            assert _pixels(page) == drawn
        _screenshot(page, "annotate_page.png", capsys)

        page.locator("#save").click()
        save_and_next_ms = _shown(page, 2)
        assert np.array_equal(store.answer(7).mask, expected)
        assert page.locator("#progress-text").inner_text().startswith("1 of 3 answered")

        page.keyboard.press("Enter")                      # nothing marked: refused on the page
        assert "Mark at least one region" in page.locator("#message").inner_text()
        assert store.answer(2) is None

        page.reload()
        _shown(page, 2)
        page.keyboard.press("p")
        _shown(page, 7)
        assert _marked(page) == expected.sum()
        assert page.locator("#saved-status").inner_text().startswith("Saved: regions marked irrelevant.")
        page.keyboard.press("n")
        next_ms = _shown(page, 2)

        page.locator("#fine").click()
        _shown(page, 11)
        assert page.locator("#label").inner_text() == "True label: unknown"
        page.keyboard.press("s")
        page.wait_for_selector("#finished:not([hidden])")
        assert page.locator("#next-command").inner_text() == NEXT_COMMAND
        assert page.locator("#progress-text").inner_text().startswith("3 of 3 answered")
        _screenshot(page, "annotate_finished.png", capsys)
        assert {i: a.decision for i, a in store.answers().items()} == {7: "irrelevant", 2: "accepted", 11: "skipped"}
        assert np.array_equal(store.answer(7).mask, expected)

        page.locator("#review").click()
        _shown(page, 7)
        assert _marked(page) == expected.sum()
    with capsys.disabled():
        print(f"  first image {first_ms:.0f} ms (heat map {HEATMAP_SECONDS * 1000:.0f} ms), save and next "
              f"{save_and_next_ms:.0f} ms, next {next_ms:.0f} ms")
    assert next_ms < 300 and save_and_next_ms < 300, "the next image was not prefetched"


def test_accepting_all_candidates_on_a_colour_image_without_token(browser, tmp_path):
    task = FakeTask("rgb", indices=(5, 6))
    store = fake_store(tmp_path / "feedback.sqlite", task)
    segments, candidates = task.regions(5)
    with _serving(create_app(task, store)) as base, _page(browser, base) as page:
        page.goto(base)
        _shown(page, 5)
        assert page.locator("#canvas").evaluate("c => [c.width, c.height]") == [448, 448]
        canvas = _Canvas(page, zoom=7)
        canvas.click(*_inside(segments, candidates[0]))   # mark one, then all candidates
        page.locator("#accept-candidates").click()
        assert _marked(page) == np.isin(segments, candidates).sum()
        page.keyboard.press("Enter")
        _shown(page, 6)
    assert np.array_equal(store.answer(5).mask, np.isin(segments, candidates))
