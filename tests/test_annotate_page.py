"""The annotation page in a real browser (Chromium through Playwright): marking regions, painting,
undo and redo, zoom and pan, saving, reloading, accepting, skipping, the finished screen and the
time to the next image; the address (#item=N) and the list of images; no proposal to mark; unsaved
marks kept across a reload and a server restart; the page at 1024 x 768.

The session fixture ``browser`` (conftest.py) installs Debian's Chromium with apt when it is missing
and the tests run as root; screenshots go to test-artifacts/ (or $TEST_ARTIFACTS)."""
import os
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt
from werkzeug.serving import WSGIRequestHandler

from annotate_fixtures import FakeTask, fake_store
from pyro_ebnn.annotate.server import create_app, serving_in_background
from pyro_ebnn.annotate.session import page_token

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
NEXT_COMMAND = "pyro-ebnn finetune --config configs/finetune.yaml"
HEATMAP_SECONDS = 0.4  # like a model's explanation: "next" within 300 ms needs the prefetch


class _OneRequestPerConnection(WSGIRequestHandler):
    """HTTP/1.0: no connection outlives its request, so a stopped server is gone for the browser
    as when its process ends."""
    protocol_version = "HTTP/1.0"

    def log_request(self, *args, **kwargs):
        pass


_serving = serving_in_background


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _page(browser, base, size=(1280, 900)):
    """A page that records requests leaving the app, script errors and Content-Security-Policy
    violations."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.outside, page.errors = [], []
    page.on("request", lambda r: None if r.url.startswith(base) else page.outside.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield page
    finally:
        assert page.outside == [], "the page fetched from outside the app"
        assert page.errors == [], "the page's script failed or broke its Content-Security-Policy"
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
    page.wait_for_function("() => document.body.dataset.marked !== undefined")  # a function: the CSP forbids eval
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

        page.locator("#accept").click()
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


def test_marking_all_proposals_on_a_colour_image_without_token(browser, tmp_path):
    task = FakeTask("rgb", indices=(5, 6))
    store = fake_store(tmp_path / "feedback.sqlite", task)
    segments, candidates = task.regions(5)
    with _serving(create_app(task, store)) as base, _page(browser, base) as page:
        page.goto(base)
        _shown(page, 5)
        assert page.locator("#canvas").evaluate("c => [c.width, c.height]") == [448, 448]
        canvas = _Canvas(page, zoom=7)
        canvas.click(*_inside(segments, candidates[0]))   # mark one, then all proposals
        page.locator("#mark-proposals").click()
        assert _marked(page) == np.isin(segments, candidates).sum()
        page.keyboard.press("Enter")
        _shown(page, 6)
    assert np.array_equal(store.answer(5).mask, np.isin(segments, candidates))


def _message(page, text):
    page.wait_for_function("t => document.getElementById('message').textContent.includes(t)", arg=text,
                           timeout=10_000)
    return page.locator("#message").inner_text()


def _view(page, start):
    """The canvas's view (scale, x and y offsets) once it starts with ``start``."""
    page.wait_for_function("s => (document.getElementById('canvas').dataset.view || '').startsWith(s)", arg=start,
                           timeout=10_000)
    return list(map(float, page.locator("#canvas").get_attribute("data-view").split(",")))


def test_without_proposals_mark_all_is_off_with_a_note(browser, tmp_path):
    task = FakeTask("grey", indices=(7, 2), no_proposals=(2,))
    store = fake_store(tmp_path / "feedback.sqlite", task)
    with _serving(create_app(task, store)) as base, _page(browser, base) as page:
        page.goto(f"{base}/#item=2")
        _shown(page, 2)
        button, note = page.locator("#mark-proposals"), page.locator("#proposals-note")
        assert button.is_disabled() and note.is_visible()
        assert note.inner_text().startswith("No proposal on this image")
        page.keyboard.press("a")                          # the key says why nothing happens
        assert "No proposal on this image" in page.locator("#message").inner_text() and _marked(page) == 0
        page.keyboard.press("p")
        _shown(page, 7)
        assert button.is_enabled() and not note.is_visible()


def test_address_history_jump_list_redo_and_zoom_at_1024_by_768(browser, tmp_path):
    task = FakeTask("grey", indices=(7, 2, 11))
    store = fake_store(tmp_path / "feedback.sqlite", task)
    segments, candidates = task.regions(7)
    with _serving(create_app(task, store)) as base, _page(browser, base, size=(1024, 768)) as page:
        page.goto(f"{base}/#item=11")
        _shown(page, 11)
        save = page.locator("#save").bounding_box()      # Save without scrolling
        assert 0 <= save["y"] and save["y"] + save["height"] <= 768 and save["x"] + save["width"] <= 1024

        page.keyboard.press("p")                          # the address follows, back and forward too
        _shown(page, 2)
        assert page.evaluate("location.hash") == "#item=2"
        page.go_back()
        _shown(page, 11)
        page.go_forward()
        _shown(page, 2)
        page.reload()
        _shown(page, 2)
        page.evaluate("location.hash = '#item=7'")        # an address typed while open
        _shown(page, 7)

        canvas = _Canvas(page, zoom=16)                   # undo and redo
        region = segments == candidates[0]
        canvas.click(*_inside(segments, candidates[0]))
        assert _marked(page) == region.sum()
        page.keyboard.press("z")
        assert _marked(page) == 0 and page.locator("#redo").is_enabled()
        page.keyboard.press("y")
        assert _marked(page) == region.sum()
        page.keyboard.press("Control+z")
        page.locator("#redo").click()
        assert _marked(page) == region.sum() and page.locator("#redo").is_disabled()

        page.locator("#zoom-in").click()                  # zoomed: a click lands on the pixel shown there
        page.locator("#zoom-in").click()
        scale, left, top = _view(page, "2.25,")
        assert left > 0 and top > 0 and page.locator("#zoom-level").inner_text() == "225%"
        second = segments == segments[14, 14]             # the region at the centre
        inside = [(x, y) for y, x in zip(*np.nonzero(second))
                  if 0 < (x + 0.5) * 16 * scale - left < 448 and 0 < (y + 0.5) * 16 * scale - top < 448]
        x, y = inside[len(inside) // 2]
        page.mouse.click(canvas.box["x"] + (x + 0.5) * 16 * scale - left,
                         canvas.box["y"] + (y + 0.5) * 16 * scale - top)
        assert _marked(page) == (region | second).sum()
        page.mouse.move(canvas.box["x"] + 200, canvas.box["y"] + 200)   # pan with the right button
        page.mouse.down(button="right")
        page.mouse.move(canvas.box["x"] + 150, canvas.box["y"] + 230, steps=4)
        page.mouse.up(button="right")
        assert _view(page, f"2.25,{left + 50:.2f},") == [scale, left + 50, top - 30]
        assert _marked(page) == (region | second).sum()
        page.keyboard.press("0")
        _view(page, "1.00,0.00,0.00")

        options = page.locator("#jump option")            # the list: every image with its state
        assert options.all_inner_texts() == ["1. image #7: not answered, unsaved marks", "2. image #2: not answered",
                                             "3. image #11: not answered"]
        page.locator("#jump").select_option("11")
        _shown(page, 11)
        page.keyboard.press("f")
        _shown(page, 7)                                   # the next image without an answer
        assert options.nth(2).inner_text() == "3. image #11: explanation accepted"
        assert page.evaluate("location.hash") == "#item=7" and _marked(page) == (region | second).sum()
    assert store.answer(11).decision == "accepted" and store.answer(7) is None


def test_unsaved_marks_survive_a_reload_and_a_server_restart(browser, tmp_path):
    task = FakeTask("grey", indices=(7, 2, 11))
    path = tmp_path / "feedback.sqlite"
    token = page_token(path)                              # saved beside the store, the same after a restart
    start = f"python -m pyro_ebnn.run annotate --run runs/x --store {path} --budget 3 --select random"
    stores = []

    def app():
        stores.append(fake_store(path, task))
        return create_app(task, stores[-1], token=page_token(path), start_command=start)

    segments, candidates = task.regions(2)
    marked = segments == candidates[0]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/?token={token}#item=2"
    dialogs = []
    with _page(browser, base) as page:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
        with _serving(app(), port, _OneRequestPerConnection):
            page.goto(url)
            _shown(page, 2)
            _Canvas(page, zoom=16).click(*_inside(segments, candidates[0]))
            assert _marked(page) == marked.sum()
            page.reload()                                 # the browser asks first; the marks come back
            _shown(page, 2)
            assert dialogs == ["beforeunload"] and _marked(page) == marked.sum()
            assert "restored from this browser" in page.locator("#message").inner_text()
        page.keyboard.press("Enter")                      # the server is gone: a clear line, marks kept
        assert f"the server is not running: start it again with {start}" in _message(page, "not running")
        assert _marked(page) == marked.sum() and stores[-1].answer(2) is None
        with _serving(app(), port, _OneRequestPerConnection):
            page.keyboard.press("Enter")                  # started again on the same store: saved
            _shown(page, 11)
            assert np.array_equal(stores[-1].answer(2).mask, marked)
            page.goto(url)                                # the same address still opens the page
            _shown(page, 2)
            assert _marked(page) == marked.sum() and page.locator("#message").inner_text() == ""
    for store in stores:
        store.close()
