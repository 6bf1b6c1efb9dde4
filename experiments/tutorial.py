"""The tutorial's walk through the page (docs/tutorial.md), played by a script in a real browser:
a trained run's annotation page opened in Chromium (Playwright) on the images ``--select
shortcut`` chooses, the discovery view, then up to ``--actions`` marks: on a member of the
best-ranked group whose shortcut no earlier mark has reached, the shortcut painted with rows of the
page's brush and saved for "every pool image where the region looks the same in pixels";
screenshots of each step; how many images each mark reached and how many of them carry the
shortcut (the dataset's own masks, which the page never sees); then ``finetune --feedback`` on the
store, the same fine-tuning without answers (the control), and ``explain`` of the run before and
after.

    python experiments/tutorial.py --run RUN --out results/tutorial --figures docs/figures/tutorial

The person is played from what they see: the script paints the square it finds in the member's
true mask (a person sees the coloured square). Needs Debian's ``chromium`` (``apt-get install -y
chromium``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pyro_ebnn.annotate import AnnotationTask, create_app
from pyro_ebnn.annotate.server import serving_in_background
from pyro_ebnn.annotate.session import finetune_command
from pyro_ebnn.experiment.rundir import read_metrics

#: what the summary keeps of each run's metrics.json
REPORTED = ("balanced_accuracy", "worst_group_accuracy", "marked_swap_balanced_accuracy")

CHROMIUM = "/usr/bin/chromium"
TOKEN = "tutorial"


def paint_box(page, box, zoom, brush=3):
    """Rows of brush strokes that cover ``box`` = (top, left, bottom, right), inclusive, in image
    pixels on the page's canvas; returns the number of strokes."""
    top, left, bottom, right = box
    frame = page.locator("#canvas").bounding_box()

    def at(x, y):
        return frame["x"] + (x + 0.5) * zoom, frame["y"] + (y + 0.5) * zoom

    page.keyboard.press("b")
    page.locator("#brush-size").fill(str(brush))
    rows = list(range(top + brush // 2, bottom + 1, brush))
    if rows[-1] + brush // 2 < bottom:
        rows.append(bottom - brush // 2)
    for y in rows:
        page.mouse.move(*at(left, y))
        page.mouse.down()
        page.mouse.move(*at(right, y), steps=max(2, right - left))
        page.mouse.up()
    return len(rows)


def bounding_box(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())


def walk_the_page(task: AnnotationTask, store_path: Path, figures: Path, budget: int, actions: int) -> dict:
    """The person's walk: the page, the discovery view, then up to ``actions`` marks, each on a shown
    member of the best-ranked group that still has a member whose shortcut no mark has reached,
    propagated by pixels. Returns what each mark reached."""
    from playwright.sync_api import sync_playwright

    figures.mkdir(parents=True, exist_ok=True)
    discovery = task.discovery()
    with_shortcut = {int(i) for i in task.pool if task.true_mask(int(i)).any()}
    reached, marks = set(), []
    with task.open_store(store_path, "tutorial") as store, sync_playwright() as p:
        task.select("shortcut", budget)
        app = create_app(task, store, token=TOKEN, next_command=finetune_command(task.run_dir, store_path),
                         discovery=discovery)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        with serving_in_background(app) as base:
            page.goto(f"{base}/?token={TOKEN}")
            page.wait_for_selector("body[data-index]", timeout=60_000)
            page.evaluate("() => new Promise(requestAnimationFrame)")
            page.screenshot(path=str(figures / "page.png"))
            page.locator("#groups-link").click()
            page.wait_for_selector("body[data-group]", timeout=120_000)
            page.screenshot(path=str(figures / "groups.png"))
            saved = None
            for group in discovery.groups():
                if len(marks) == actions:
                    break
                member = next((i for i in group.shown() if i in with_shortcut and i not in reached), None)
                if member is None:
                    continue
                page.locator(f"#group-list button[data-key='{group.key}']").click()
                page.wait_for_selector(f"body[data-group='{group.key}']", timeout=60_000)
                page.locator(f"#members img[data-index='{member}']").click()
                page.wait_for_selector(f"body[data-view='{member}']")
                zoom = page.locator("#canvas").bounding_box()["width"] / task.image(member).shape[1]
                strokes = paint_box(page, bounding_box(task.true_mask(member)), zoom)
                page.locator("input[name=rule][value=pixels]").check()
                page.locator("#save-group").click()
                page.wait_for_function(f"() => document.body.dataset.saved && document.body.dataset.saved !== '{saved}'",
                                       timeout=120_000)
                saved = page.evaluate("document.body.dataset.saved")
                page.wait_for_selector(".answer .propagated figure", timeout=60_000)
                found = {m.index for m in store.propagated(int(saved))} | {member}
                reached |= found
                marks.append({"group": group.key, "group_size": group.size, "marked_on": member, "strokes": strokes,
                              "marked_pixels": int(store.answer(member).mask.sum()), "reached": len(found),
                              "reached_with_shortcut": len(found & with_shortcut),
                              "pool_shortcut_reached": len(reached & with_shortcut)})
                if len(marks) == 1:
                    page.screenshot(path=str(figures / "marked.png"))
            browser.close()
    return {"pool": len(task.pool), "pool_with_shortcut": len(with_shortcut), "marks": marks}


def run(*args):
    print("$ python -m pyro_ebnn.run " + " ".join(map(str, args)), flush=True)
    subprocess.run([sys.executable, "-m", "pyro_ebnn.run", *map(str, args)], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="a trained run (mode none) on an image folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--figures", required=True, type=Path)
    parser.add_argument("--budget", type=int, default=20, help="images of the one-image-at-a-time page")
    parser.add_argument("--actions", type=int, default=4, help="marks the person makes on the discovery view")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "feedback.sqlite"
    if store.exists():
        raise SystemExit(f"{store} exists: the walk starts from an empty store; give another --out")
    task = AnnotationTask(args.run)
    walk = walk_the_page(task, store, args.figures, args.budget, args.actions)
    print(json.dumps(walk, indent=1))
    (args.out / "walk.json").write_text(json.dumps(walk, indent=1) + "\n")

    finetuned, control = args.out / "finetuned", args.out / "control"
    run("finetune", "--run", args.run, "--feedback", store, "--out", finetuned)
    run("finetune", "--run", args.run, "--set", "finetune_budget=0", "--out", control)
    summary = {name: {k: v for k, v in read_metrics(path).items() if k in REPORTED}
               for name, path in (("before", args.run), ("control", control), ("finetuned", finetuned))}
    print(json.dumps(summary, indent=1))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    run("explain", "--run", args.run, "--run", finetuned, "--out", args.out / "explain", "--n-images", 6,
        "--methods", "saliency,gradcam")
    for figure in (args.out / "explain").glob("*.png"):
        shutil.copy(figure, args.figures / f"explain_{figure.name}")


if __name__ == "__main__":
    main()
