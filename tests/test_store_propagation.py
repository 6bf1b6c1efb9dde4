"""Masks propagated from one answer to many images: stored with their provenance, counted in the
combined view (what fine-tuning reads) below an image's own answer, undone together with their
answer in one action, nothing deleted; a store written before propagation existed still opens."""
import sqlite3

import numpy as np
import pytest

from pyro_ebnn.data.store import FORMAT_VERSION, AnswerError, FeedbackStore, StoreError

SHAPE = (5, 7)

#: the schema of a store of format 1, as the version before propagation wrote it
FORMAT_1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    image_index INTEGER NOT NULL CHECK (image_index >= 0),
    annotator TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('irrelevant', 'accepted', 'skipped')),
    mask_bits BLOB,
    mask_height INTEGER,
    mask_width INTEGER,
    answered_at TEXT NOT NULL,
    CHECK ((decision = 'irrelevant') = (mask_bits IS NOT NULL))
)""",
    "CREATE INDEX answers_by_annotator ON answers (annotator, image_index, id)",
)


def _store(tmp_path, annotator="ann"):
    return FeedbackStore(tmp_path / "feedback.sqlite", "fp", SHAPE, annotator)


def _box(top, left, size=2):
    mask = np.zeros(SHAPE, bool)
    mask[top:top + size, left:left + size] = True
    return mask


def test_a_group_answer_stores_one_answer_and_a_mask_per_member_with_provenance(tmp_path):
    store = _store(tmp_path)
    members = [3, 4, 8]
    answer, masks = store.record_propagated(
        (3, _box(0, 0)), [(i, _box(0, 0), "place", 0.5 + i / 100, {"group": "c1g0"}) for i in members])
    assert answer.decision == "irrelevant" and answer.index == 3 and len(store.history()) == 1
    assert [(p.index, p.rule, p.answer, p.detail) for p in masks] == [(i, "place", answer.row, {"group": "c1g0"})
                                                                     for i in members]
    again = store.propagated(answer.row)
    assert [p.row for p in again] == [p.row for p in masks] and again[1].score == pytest.approx(0.54)
    assert all(np.array_equal(p.mask, _box(0, 0)) for p in again) and not any(p.undone for p in again)
    combined = store.combined()
    assert sorted(combined) == members
    assert combined[4].annotator == "ann (propagated)" and combined[4].propagated_from == (answer.row,)
    assert combined[3].propagated_from == ()                       # the image's own answer comes first
    assert sorted(store.combined(propagated=False)) == [3]
    # a second answer propagates from an existing row; two masks on one image are united
    other = store.record(9, "irrelevant", _box(3, 5))
    _, more = store.record_propagated(other.row, [(4, _box(3, 5), "features", 0.91, {"threshold": 0.8})])
    assert np.array_equal(store.combined()[4].mask, _box(0, 0) | _box(3, 5))
    assert store.combined()[4].propagated_from == (answer.row, other.row)


def test_an_images_own_answer_beats_a_propagated_mask_but_a_skip_does_not(tmp_path):
    store = _store(tmp_path)
    answer, _ = store.record_propagated((1, _box(0, 0)), [(2, _box(0, 0), "place", None, {}),
                                                          (5, _box(0, 0), "place", None, {})])
    store.record(2, "accepted")
    FeedbackStore(tmp_path / "feedback.sqlite", "fp", SHAPE, "bob").record(5, "skipped")
    combined = store.combined()
    assert combined[2].decision == "accepted" and combined[5].decision == "irrelevant"


def test_undo_withdraws_the_answer_and_everything_propagated_from_it_and_deletes_nothing(tmp_path):
    store = _store(tmp_path)
    earlier = store.record(3, "irrelevant", _box(1, 1))
    answer, masks = store.record_propagated((3, _box(0, 0)), [(i, _box(0, 0), "place", 1.0, {}) for i in (4, 5, 6)])
    assert store.undo(answer.row) == 3
    assert store.propagated() == [] and len(store.propagated(include_undone=True)) == 3
    assert all(p.undone for p in store.propagated(answer.row, include_undone=True))
    assert store.answer(3).row == earlier.row                     # the answer before it is in force again
    assert sorted(store.combined()) == [3] and store.answered() == {3}
    assert len(store.history()) == 2 and store.undone() == {answer.row}
    with pytest.raises(AnswerError, match="undone already"):
        store.undo(answer.row)
    with pytest.raises(AnswerError, match="no answer 99"):
        store.undo(99)
    with pytest.raises(AnswerError, match="only its annotator"):
        FeedbackStore(tmp_path / "feedback.sqlite", "fp", SHAPE, "bob").undo(earlier.row)
    with pytest.raises(AnswerError, match="no answer .* in force"):
        store.record_propagated(answer.row, [(7, _box(0, 0), "place", 1.0, {})])


@pytest.mark.parametrize("answer, masks, message", [
    ((1, np.zeros(SHAPE)), [], "marks no pixel"),
    ((1, _box(0, 0)), [(2, np.ones((3, 3)), "place", 1.0, {})], "image's size"),
    ((1, _box(0, 0)), [(2, _box(0, 0), "", 1.0, {})], "non-empty name"),
    ((1, _box(0, 0)), [(2, _box(0, 0), "place", float("nan"), {})], "finite number"),
    ((1, _box(0, 0)), [(2, _box(0, 0), "place", 1.0, {"x": object()})], "JSON object"),
    ((1, _box(0, 0)), [(2, _box(0, 0), "place")], "is \\(index, mask, rule, score, detail\\)"),
    ("answer", [], "row of an answer or \\(index, mask\\)"),
    (7, [], "no answer 7 in force"),
])
def test_bad_propagations_are_refused_and_write_nothing(tmp_path, answer, masks, message):
    store = _store(tmp_path)
    with pytest.raises(AnswerError, match=message) as err:
        store.record_propagated(answer, masks)
    assert "\n" not in str(err.value) and store.history() == [] and store.propagated(include_undone=True) == []


def test_only_the_annotators_own_irrelevant_answers_propagate(tmp_path):
    store = _store(tmp_path)
    accepted = store.record(1, "accepted")
    with pytest.raises(AnswerError, match="own answers that mark a region"):
        store.record_propagated(accepted.row, [(2, _box(0, 0), "place", 1.0, {})])
    marked = store.record(1, "irrelevant", _box(0, 0))
    with pytest.raises(AnswerError, match="own answers"):
        FeedbackStore(tmp_path / "feedback.sqlite", "fp", SHAPE, "bob").record_propagated(
            marked.row, [(2, _box(0, 0), "place", 1.0, {})])


def test_a_store_written_before_propagation_opens_and_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        for statement in FORMAT_1:
            db.execute(statement)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "1"), ("fingerprint", "fp"),
                                                         ("image_shape", "5x7")])
        bits = np.packbits(_box(0, 0).ravel()).tobytes()
        db.execute("INSERT INTO answers (fingerprint, image_index, annotator, decision, mask_bits, mask_height, "
                   "mask_width, answered_at) VALUES ('fp', 2, 'ann', 'irrelevant', ?, 5, 7, '2026-01-01T00:00:00')",
                   (bits,))
    store = FeedbackStore(path, "fp", SHAPE, "ann")
    assert np.array_equal(store.answer(2).mask, _box(0, 0)) and store.propagated() == []
    _, masks = store.record_propagated(store.answer(2).row, [(4, _box(0, 0), "place", 1.0, {})])
    assert sorted(store.combined()) == [2, 4]
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] == FORMAT_VERSION == "2"
    with sqlite3.connect(tmp_path / "future.sqlite") as db:
        for statement in FORMAT_1:
            db.execute(statement)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "3"), ("fingerprint", "fp"),
                                                         ("image_shape", "5x7")])
    with pytest.raises(StoreError, match="format '3'.*open it with the version that wrote it"):
        FeedbackStore(tmp_path / "future.sqlite", "fp", SHAPE)


def test_the_npz_export_carries_the_propagated_masks(tmp_path):
    store = _store(tmp_path)
    store.record_propagated((1, _box(0, 0)), [(2, _box(3, 5), "features", 0.9, {})])
    store.export_npz(tmp_path / "m.npz", 4)
    with np.load(tmp_path / "m.npz") as data:
        assert data["train_masks"][:, 0].reshape(4, -1).any(1).tolist() == [False, True, True, False]
        assert data["annotator"][2] == "ann (propagated)"
