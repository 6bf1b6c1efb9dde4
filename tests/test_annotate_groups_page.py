"""The discovery view in a real browser (Chromium through Playwright): the groups best first, the
group with the planted square opened, the square marked once with a click on its proposed region
and saved for the group, the propagated masks in the store and on the page, the answer undone in
one action; a patch marked on one image found in the other classes by pixels. Screenshots go to
test-artifacts/ (or $TEST_ARTIFACTS)."""
import numpy as np

from annotate_fixtures import FakeTask, fake_store
from discovery_fixtures import SIZE, SQUARE, PlantedPool
from pyro_ebnn.annotate.server import create_app
from test_annotate_page import _page, _screenshot, _serving

ZOOM = 16  # 448 px for 28 px


def _click(page, x, y):
    box = page.locator("#canvas").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) * ZOOM, box["y"] + (y + 0.5) * ZOOM)


def _marked(page):
    page.evaluate("() => new Promise(requestAnimationFrame)")
    return int(page.locator("#canvas").get_attribute("data-marked"))


def test_marking_a_group_once_in_a_browser(browser, tmp_path, capsys):  # noqa: F811
    pool = PlantedPool()
    store = fake_store(tmp_path / "feedback.sqlite", FakeTask("grey"))
    discovery = pool.discovery()
    app = create_app(FakeTask("grey"), store, token="s3cret", discovery=discovery)
    best = discovery.groups()[0]
    square = np.zeros((SIZE, SIZE), bool)
    square[SQUARE] = True
    with _serving(app) as base, _page(browser, base) as page:
        page.goto(f"{base}/?token=s3cret")
        page.locator("#groups-link").click()
        page.wait_for_selector(f"body[data-group='{best.key}']", timeout=10_000)
        assert page.locator("#group-list button").count() == 4
        assert page.locator("#members img").count() == 12
        assert "concentration" in page.locator("#group-stats").inner_text()
        _screenshot(page, "groups_view.png", capsys)

        _click(page, 3, 3)                                   # the proposed region on the square
        marked = _marked(page)
        assert marked >= square.sum()
        for key, expected in (("z", 0), ("y", marked), ("c", 0), ("z", marked)):   # undo, redo, clear, undo
            page.keyboard.press(key)
            assert _marked(page) == expected, key
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-saved]", timeout=10_000)
        page.wait_for_selector(".answer .propagated figure")
        row = int(page.evaluate("document.body.dataset.saved"))
        assert len(store.history()) == 1 and store.history()[0].row == row
        propagated = store.propagated(row)
        assert sorted(p.index for p in propagated) == sorted(best.members)
        assert all(p.rule == "place" and p.detail["group"] == best.key and p.mask[SQUARE].all() for p in propagated)
        assert page.locator(".answer .propagated figure").count() == best.size
        assert f"to {best.size} images" in page.locator(".answer p").inner_text()
        assert "✓" in page.locator("#group-list button.current").inner_text()
        _screenshot(page, "groups_marked.png", capsys)

        page.locator(".undo-answer").click()
        page.wait_for_selector(f"body[data-undone='{row}']", timeout=10_000)
        assert store.combined() == {} and store.propagated() == [] and len(store.history()) == 1
        assert "Nothing yet" in page.locator("#answers").inner_text()

        member = best.shown()[0]                             # mark on one image, find it everywhere
        page.locator(f"#members img[data-index='{member}']").click()
        page.wait_for_selector(f"body[data-view='{member}']")
        page.keyboard.press("b")
        page.locator("#brush-size").fill("1")
        page.keyboard.press("]")                             # the brush keys of the annotation page
        assert page.locator("#brush-size-value").inner_text() == "2"
        page.keyboard.press("[")
        page.keyboard.press("[")                             # not below the slider's least size
        assert page.locator("#brush-size-value").inner_text() == "1"
        for y in range(2, 6):
            for x in range(2, 6):
                _click(page, x, y)
        assert _marked(page) == square.sum()
        page.locator("input[name=rule][value=pixels]").check()
        page.locator("#save-group").click()
        page.wait_for_function(f"() => document.body.dataset.saved && document.body.dataset.saved !== '{row}'")
        second = int(page.evaluate("document.body.dataset.saved"))
        found = {p.index for p in store.propagated(second)}
        assert found == {i for i in pool.indices if pool.has_square(i)}   # both classes' squares
        assert store.answer(member).row == second
        _screenshot(page, "groups_find_everywhere.png", capsys)
