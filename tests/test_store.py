"""The feedback store keeps every answer: masks round-trip, revisions append, annotators and
processes never overwrite each other, a killed writer leaves a consistent store, bad answers write
nothing, and the .npz mask layout round-trips."""
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pyro_ebnn.data.store import AnswerError, FeedbackStore, StoreError, dataset_fingerprint
from pyro_ebnn.errors import EBNNError
from store_writer import FINGERPRINT, IMAGE_SHAPE, NUM_IMAGES, expected_mask

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("store_writer.py")


def _store(tmp_path, annotator="ann", shape=(5, 7), fingerprint="fp"):
    return FeedbackStore(tmp_path / "feedback.sqlite", fingerprint, shape, annotator)


def _mask(shape, seed, p=0.4):
    mask = np.random.default_rng(seed).random(shape) < p
    mask.flat[0] = True
    return mask


def _rows(tmp_path):
    with sqlite3.connect(tmp_path / "feedback.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def _start_writer(path, annotator, count):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(WRITER), str(path), annotator, str(count)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_fingerprint_depends_on_every_part_and_its_type():
    images = np.arange(12, dtype=np.float32).reshape(3, 4)
    base = dataset_fingerprint("decoy", images, 0)
    assert base == dataset_fingerprint("decoy", images.copy(), 0)
    assert len({base, dataset_fingerprint("decoy", images, 1), dataset_fingerprint("decoy", images.reshape(4, 3), 0),
                dataset_fingerprint("decoy", images.astype(np.float64), 0), dataset_fingerprint("deco", "y", images, 0),
                dataset_fingerprint("decoy", images[::-1], 0)}) == 6


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (3, 5), (28, 28), (13, 17), (9, 8)])
def test_masks_of_odd_shapes_round_trip(tmp_path, shape):
    mask = _mask(shape, seed=sum(shape))
    store = _store(tmp_path, shape=shape)
    assert np.array_equal(store.record(2, "irrelevant", mask).mask, mask)
    store.close()
    reopened = _store(tmp_path, shape=shape)
    answer = reopened.answer(2)
    assert answer.mask.dtype == bool and np.array_equal(answer.mask, mask)
    assert answer.decision == "irrelevant" and answer.annotator == "ann"
    assert answer.answered_at.endswith("+00:00")


def test_masks_given_as_numbers_are_stored_as_bool(tmp_path):
    store = _store(tmp_path)
    mask = _mask((5, 7), seed=1)
    for values in (mask.astype(np.uint8), mask.astype(np.float32), mask.astype(int).tolist()):
        assert np.array_equal(store.record(0, "irrelevant", values).mask, mask)


def test_revising_keeps_history_and_the_latest_wins(tmp_path):
    store = _store(tmp_path)
    first, second = _mask((5, 7), 1), _mask((5, 7), 2)
    store.record(4, "irrelevant", first)
    store.record(4, "accepted")
    store.record(4, "irrelevant", second)
    store.record(1, "skipped")
    assert [a.decision for a in store.history(4)] == ["irrelevant", "accepted", "irrelevant"]
    assert np.array_equal(store.history(4)[0].mask, first)
    assert np.array_equal(store.answer(4).mask, second)
    assert store.answered() == {1, 4}
    assert {i: a.decision for i, a in store.answers().items()} == {1: "skipped", 4: "irrelevant"}
    rows = [a.row for a in store.history()]
    assert rows == sorted(rows) and len(rows) == 4


def test_annotators_keep_their_own_answers_and_the_combined_view(tmp_path):
    alice, bob = _store(tmp_path, "alice"), _store(tmp_path, "bob")
    mask_a, mask_b = _mask((5, 7), 1), _mask((5, 7), 2)
    alice.record(0, "irrelevant", mask_a)
    bob.record(0, "irrelevant", mask_b)   # later: wins image 0 in the combined view
    alice.record(1, "irrelevant", mask_a)
    bob.record(1, "skipped")              # another annotator's skip hides nothing
    alice.record(2, "accepted")
    alice.record(2, "skipped")            # an annotator's own skip withdraws their answer
    bob.record(3, "skipped")
    assert np.array_equal(alice.answer(0).mask, mask_a) and np.array_equal(bob.answer(0).mask, mask_b)
    assert alice.answered() == {0, 1, 2} and bob.answered() == {0, 1, 3}
    combined = alice.combined()
    assert {i: (a.annotator, a.decision) for i, a in combined.items()} == {
        0: ("bob", "irrelevant"), 1: ("alice", "irrelevant"), 2: ("alice", "skipped"), 3: ("bob", "skipped")}
    assert alice.annotators() == ["alice", "bob"]


def test_two_processes_writing_at_once_both_keep_all_their_answers(tmp_path):
    path, count = tmp_path / "shared.sqlite", 3 * NUM_IMAGES
    writers = [_start_writer(path, name, count) for name in ("alice", "bob")]
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    spans = []
    for proc in writers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        times = [float(line.split()[1]) for line in out.splitlines()]
        spans.append((times[0], times[-1]))  # (started, last commit)
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, "the two writers did not overlap; the test proved nothing"
    store = FeedbackStore(path, FINGERPRINT, IMAGE_SHAPE, "alice")
    history = store.history()
    for name in ("alice", "bob"):
        mine = [a for a in history if a.annotator == name]
        assert [a.index for a in mine] == [i % NUM_IMAGES for i in range(count)]
        assert all(np.array_equal(a.mask, expected_mask(name, i)) for i, a in enumerate(mine))
    latest = FeedbackStore(path, FINGERPRINT, IMAGE_SHAPE, "bob").answers()
    assert all(np.array_equal(latest[i].mask, expected_mask("bob", 2 * NUM_IMAGES + i)) for i in range(NUM_IMAGES))
    spans = []
    for proc in writers:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        times = [float(line.split()[1]) for line in out.splitlines()]
        spans.append((times[0], times[-1]))  # (started, last commit)
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, "the two writers did not overlap; the test proved nothing"


def test_a_writer_killed_mid_loop_leaves_a_consistent_prefix_and_reopening_resumes(tmp_path):
    path = tmp_path / "killed.sqlite"
    proc = _start_writer(path, "alice", 100 * NUM_IMAGES)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    for _ in range(NUM_IMAGES + 8):  # "start", then past one full pass of commits
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    store = FeedbackStore(path, FINGERPRINT, IMAGE_SHAPE, "alice")
    history = store.history()
    k = len(history)
    assert NUM_IMAGES + 7 <= k < 100 * NUM_IMAGES
    assert [a.index for a in history] == [i % NUM_IMAGES for i in range(k)]
    assert all(np.array_equal(a.mask, expected_mask("alice", i)) for i, a in enumerate(history))
    assert store.answered() == set(range(NUM_IMAGES))
    store.record(0, "accepted")  # resumes
    assert store.answer(0).decision == "accepted" and len(store.history()) == k + 1


def test_a_store_of_another_dataset_or_image_size_is_refused(tmp_path):
    _store(tmp_path, fingerprint=dataset_fingerprint("decoy", 1)).record(0, "accepted")
    with pytest.raises(StoreError, match="made for another dataset") as err:
        _store(tmp_path, fingerprint=dataset_fingerprint("decoy", 2))
    assert "\n" not in str(err.value) and isinstance(err.value, EBNNError)
    with pytest.raises(StoreError, match="not 6x7"):
        _store(tmp_path, shape=(6, 7), fingerprint=dataset_fingerprint("decoy", 1))
    assert _rows(tmp_path) == 1


def test_files_that_are_not_stores_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    with pytest.raises(StoreError, match="not a feedback store"):
        FeedbackStore(tmp_path / "notes.txt", "fp", (5, 7))
    with sqlite3.connect(tmp_path / "other.sqlite") as db:
        db.execute("CREATE TABLE results (x)")
    with pytest.raises(StoreError, match="not a feedback store"):
        FeedbackStore(tmp_path / "other.sqlite", "fp", (5, 7))
    with pytest.raises(StoreError, match="does not exist"):
        FeedbackStore(tmp_path / "missing" / "f.sqlite", "fp", (5, 7))


@pytest.mark.parametrize("index, decision, mask, message", [
    (0, "irrelevant", np.ones((7, 5)), "image's size 5 x 7"),
    (0, "irrelevant", np.ones((1, 5, 7)), "image's size"),
    (0, "irrelevant", np.full((5, 7), 0.5), "must be binary"),
    (0, "irrelevant", np.full((5, 7), np.nan), "must be binary"),
    (0, "irrelevant", np.full((5, 7), "1"), "numbers 0 and 1"),
    (0, "irrelevant", np.zeros((5, 7)), "marks no pixel"),
    (0, "irrelevant", None, "needs a mask"),
    (0, "accepted", np.ones((5, 7)), "takes no mask"),
    (0, "skipped", np.ones((5, 7)), "takes no mask"),
    (0, "relevant", None, "unknown decision"),
    (-1, "accepted", None, "non-negative integer"),
    (1.0, "accepted", None, "non-negative integer"),
    (True, "accepted", None, "non-negative integer"),
])
def test_bad_answers_are_refused_and_write_nothing(tmp_path, index, decision, mask, message):
    store = _store(tmp_path)
    with pytest.raises(AnswerError, match=message) as err:
        store.record(index, decision, mask)
    assert "\n" not in str(err.value) and isinstance(err.value, EBNNError)
    assert _rows(tmp_path) == 0 and store.answered() == set()


def _answered_store(tmp_path, name="feedback.sqlite"):
    store = FeedbackStore(tmp_path / name, "fp", (9, 6), "alice")
    store.record(0, "irrelevant", _mask((9, 6), 0))
    store.record(2, "accepted")
    store.record(3, "skipped")
    store.record(5, "irrelevant", _mask((9, 6), 5))
    return store


def test_npz_export_writes_the_project_layout(tmp_path):
    store = _answered_store(tmp_path)
    store.export_npz(tmp_path / "masks.npz", num_images=7)
    with np.load(tmp_path / "masks.npz", allow_pickle=False) as data:
        assert data["train_masks"].shape == (7, 1, 9, 6) and set(np.unique(data["train_masks"])) == {0, 1}
        assert np.array_equal(data["train_masks"][5, 0], _mask((9, 6), 5)) and not data["train_masks"][[1, 2, 3]].any()
        assert data["annotated"].tolist() == [True, False, True, False, False, True, False]
        assert data["decision"].tolist() == ["irrelevant", "", "accepted", "skipped", "", "irrelevant", ""]
        assert data["annotator"].tolist() == ["alice", "", "alice", "alice", "", "alice", ""]
        assert str(data["fingerprint"]) == "fp"
    with pytest.raises(StoreError, match="answers for image 5 but num_images is 4"):
        store.export_npz(tmp_path / "short.npz", num_images=4)


def test_npz_import_round_trips_as_a_named_annotator_and_overwrites_nothing(tmp_path):
    _answered_store(tmp_path, "a.sqlite").export_npz(tmp_path / "masks.npz", num_images=7)
    target = FeedbackStore(tmp_path / "b.sqlite", "fp", (9, 6), "carol")
    target.record(0, "accepted")
    assert target.import_npz(tmp_path / "masks.npz") == 4
    assert target.import_npz(tmp_path / "masks.npz") == 0  # nothing new the second time
    assert target.answer(0).decision == "accepted"  # carol's answer is untouched
    imported = FeedbackStore(tmp_path / "b.sqlite", "fp", (9, 6), "import:masks.npz").answers()
    assert {i: a.decision for i, a in imported.items()} == {0: "irrelevant", 2: "accepted", 3: "skipped",
                                                             5: "irrelevant"}
    assert np.array_equal(imported[5].mask, _mask((9, 6), 5))
    target.export_npz(tmp_path / "again.npz", num_images=7)
    with np.load(tmp_path / "masks.npz") as before, np.load(tmp_path / "again.npz") as after:
        for key in ("train_masks", "annotated", "decision"):
            assert np.array_equal(before[key], after[key]), key


def test_npz_import_of_masks_only_and_of_annotated_flags(tmp_path):
    masks = np.zeros((4, 1, 9, 6), np.uint8)
    masks[1, 0, 2:4, 1:3] = 1
    np.savez(tmp_path / "plain.npz", train_masks=masks)
    np.savez(tmp_path / "flags.npz", train_masks=masks, annotated=np.array([True, True, False, False]))
    store = FeedbackStore(tmp_path / "s.sqlite", "fp", (9, 6))
    assert store.import_npz(tmp_path / "plain.npz") == 1
    assert store.import_npz(tmp_path / "flags.npz") == 2
    flags = FeedbackStore(tmp_path / "s.sqlite", "fp", (9, 6), "import:flags.npz").answers()
    assert {i: a.decision for i, a in flags.items()} == {0: "accepted", 1: "irrelevant"}


def _npz(decision, masks=np.zeros((3, 1, 9, 6))):
    return {"train_masks": masks, "decision": np.array(decision)}


@pytest.mark.parametrize("arrays, message", [
    ({"train_masks": np.zeros((3, 1, 9, 7))}, "N x 1 x 9 x 6"),
    ({"train_masks": np.full((3, 1, 9, 6), 2)}, "must be binary"),
    ({"masks": np.zeros((3, 1, 9, 6))}, "no train_masks"),
    (_npz(["accepted", "maybe", ""]), "unknown decision 'maybe'"),
    (_npz(["irrelevant", "", ""]), "image 0: the mask marks no pixel"),
    (_npz(["accepted", "", ""], np.ones((3, 1, 9, 6))), "image 0: the decision 'accepted' takes no mask"),
    ({"train_masks": np.zeros((3, 1, 9, 6)), "annotated": np.ones(2, bool)}, "one entry per image"),
    ({"train_masks": np.zeros((3, 1, 9, 6)), "fingerprint": np.array("other")}, "made for another dataset"),
])
def test_bad_npz_files_are_refused_and_import_nothing(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    store = FeedbackStore(tmp_path / "feedback.sqlite", "fp", (9, 6))
    with pytest.raises(StoreError, match=message):
        store.import_npz(tmp_path / "bad.npz")
    assert _rows(tmp_path) == 0
