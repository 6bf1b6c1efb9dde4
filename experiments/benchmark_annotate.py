"""Response times of the annotation page's server for a trained run, per image, in ms.

    python experiments/benchmark_annotate.py --run RUN_DIR [--images 20] [--strategy random] [--pool 2000]

Through Flask's test client (no browser, no network): for each of ``--images`` selected images in
order, the three requests the page makes when it shows an image it has not prefetched (the item
with its prediction and candidate regions, the image, the heat map), then the answer that saves a
mask. Reports the median and the maximum over images of each and of the whole first view; the
browser test reports the click-to-next-image time the page achieves by prefetching the next item
while the annotator works (tests/test_annotate_page.py).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pyro_ebnn.annotate import AnnotationTask
from pyro_ebnn.annotate.server import create_app, encode_mask


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--strategy", default="random")
    ap.add_argument("--pool", type=int, default=2000)
    args = ap.parse_args()

    (task, setup_ms) = timed(lambda: AnnotationTask(args.run, pool=args.pool))
    _, select_ms = timed(lambda: task.select(args.strategy, args.images))
    with tempfile.TemporaryDirectory() as tmp:
        store = task.open_store(Path(tmp) / "feedback.sqlite", "benchmark")
        client = create_app(task, store).test_client()
        times = {"item": [], "image": [], "heatmap": [], "first view": [], "answer": []}
        for index in task.indices:
            item, t_item = timed(lambda: client.get(f"/api/items/{index}"))
            _, t_image = timed(lambda: client.get(f"/api/items/{index}/image.png"))
            _, t_heat = timed(lambda: client.get(f"/api/items/{index}/heatmap.png"))
            assert item.status_code == 200, item.get_json()
            mask = task.true_mask(index).reshape(task.trainval.image_shape[-2:])
            body = {"decision": "irrelevant", "mask": encode_mask(mask)} if mask.any() else {"decision": "accepted"}
            answer, t_answer = timed(lambda: client.post(f"/api/items/{index}/answer", json=body))
            assert answer.status_code == 200, answer.get_json()
            for key, value in zip(times, (t_item, t_image, t_heat, t_item + t_image + t_heat, t_answer)):
                times[key].append(value)
        store.close()
    print(f"run {args.run}: {len(task.indices)} images ({task.image(task.indices[0]).shape}), "
          f"task set-up {setup_ms:.0f} ms, selection ({args.strategy}, pool {args.pool}) {select_ms:.0f} ms")
    print("| request | median ms | max ms |\n|---|---|---|")
    for key, values in times.items():
        print(f"| {key} | {statistics.median(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
