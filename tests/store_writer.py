"""A process that records answers into a feedback store, for the store's concurrency and crash tests.

    python tests/store_writer.py STORE ANNOTATOR COUNT

prints "ready" once the store is open, waits for a line on stdin, prints "start <time>", then
records COUNT answers, answer i about image i % NUM_IMAGES with the mask
``expected_mask(ANNOTATOR, i)``, printing "<i> <time>" after each commit (times from time.time()).
"""
import sys
import time

import numpy as np

from pyro_ebnn.data.store import FeedbackStore

__all__ = ["FINGERPRINT", "IMAGE_SHAPE", "NUM_IMAGES", "expected_mask"]

FINGERPRINT = "store-writer-dataset"
IMAGE_SHAPE = (13, 11)
NUM_IMAGES = 40


def expected_mask(annotator: str, i: int) -> np.ndarray:
    """The mask of answer ``i`` by ``annotator``: a pseudo-random pattern that names both."""
    seed = [i] + list(annotator.encode())
    mask = np.random.default_rng(seed).random(IMAGE_SHAPE) < 0.3
    mask.flat[i % mask.size] = True  # never empty
    return mask


def main(path: str, annotator: str, count: int):
    store = FeedbackStore(path, FINGERPRINT, IMAGE_SHAPE, annotator)
    print("ready", flush=True)
    sys.stdin.readline()
    print("start", time.time(), flush=True)
    for i in range(count):
        store.record(i % NUM_IMAGES, "irrelevant", expected_mask(annotator, i))
        print(i, time.time(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
