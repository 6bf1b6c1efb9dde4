"""A feedback store: every answer an annotator gives about a training image, kept in one SQLite file.

An answer is a decision about one image of one dataset:

* ``"irrelevant"``: the annotator marked regions of the image as irrelevant; the mask (bool H x W,
  True = "do not look here") is required, non-empty and of the image's size;
* ``"accepted"``: the explanation is fine; no mask;
* ``"skipped"``: the annotator gave no opinion; no mask.

The store is append-only. Each answer is committed in its own transaction the moment it is given
(WAL journal, full sync), so killing the process at any moment loses at most the answer being
written and leaves a store that opens. Revising an image appends a row; an annotator's answer to
an image is their latest row for it ("latest" = written last, by row order, not by clock).

Several annotators can share one file, also at the same time, and never overwrite each other. The
combined view (:meth:`FeedbackStore.combined`) takes each annotator's answer per image and keeps the
one written last, except that a skip never hides another annotator's mask or acceptance: per image,
the most recent non-skipped answer across annotators, else "skipped".

Every row carries the dataset's fingerprint (:func:`dataset_fingerprint`); a store made for another
dataset, or for images of another size, is refused when opened.

Propagated masks (format 2). One answer can stand for many images: a mark made once on a group of
images, or a region found again in other images that look the same to the network
(:mod:`pyro_ebnn.annotate.discovery`). :meth:`FeedbackStore.record_propagated` appends, with the
answer or after it, one row per image in the table ``propagated``: the mask, the answer it came
from (``answer_id``), the rule that made it (``rule``, e.g. ``place`` or ``features``), its
``score`` and a JSON ``detail`` (the group, the threshold). :meth:`FeedbackStore.undo` withdraws an
answer together with everything propagated from it in one transaction, by appending its id to the
table ``undone``: nothing is deleted, :meth:`FeedbackStore.history` still lists the row, and the
annotator's answer to that image is again their latest answer that was not undone. In
:meth:`FeedbackStore.combined` (what ``finetune --feedback`` reads), an image's own non-skipped
answer comes first; an image without one takes the union of the propagated masks in force.
A store of format 1 (written before propagation existed) opens as before and is migrated on open:
the two tables are added and its format becomes 2; its answers are not touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EBNNError

__all__ = ["DECISIONS", "Answer", "Propagation", "FeedbackStore", "StoreError", "AnswerError", "dataset_fingerprint"]

DECISIONS = ("irrelevant", "accepted", "skipped")
FORMAT_VERSION = "2"
#: the formats this version opens; older ones are migrated on open
READABLE_FORMATS = ("1", "2")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS answers (
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
    "CREATE INDEX IF NOT EXISTS answers_by_annotator ON answers (annotator, image_index, id)",
    # format 2: masks propagated from one answer to other images, and undone answers
    """CREATE TABLE IF NOT EXISTS propagated (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    answer_id INTEGER NOT NULL REFERENCES answers (id),
    image_index INTEGER NOT NULL CHECK (image_index >= 0),
    rule TEXT NOT NULL,
    score REAL,
    detail TEXT NOT NULL DEFAULT '{}',
    mask_bits BLOB NOT NULL,
    mask_height INTEGER NOT NULL,
    mask_width INTEGER NOT NULL,
    created_at TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS propagated_by_answer ON propagated (answer_id, image_index)",
    """CREATE TABLE IF NOT EXISTS undone (
    answer_id INTEGER PRIMARY KEY REFERENCES answers (id),
    annotator TEXT NOT NULL,
    undone_at TEXT NOT NULL
)""",
)
#: the tables of a store (sqlite_sequence is SQLite's own, for AUTOINCREMENT)
_TABLES = {"meta", "answers", "propagated", "undone", "sqlite_sequence"}
_COLUMNS = "id, image_index, annotator, decision, mask_bits, mask_height, mask_width, answered_at"
_IN_FORCE = "id NOT IN (SELECT answer_id FROM undone)"
_LATEST_PER_ANNOTATOR = (f"SELECT {_COLUMNS} FROM answers WHERE id IN "
                         f"(SELECT MAX(id) FROM answers WHERE {_IN_FORCE} GROUP BY annotator, image_index)")
_PROPAGATED_COLUMNS = ("p.id, p.answer_id, p.image_index, p.rule, p.score, p.detail, p.mask_bits, p.mask_height, "
                       "p.mask_width, p.created_at, a.annotator, u.answer_id IS NOT NULL")
_PROPAGATED_FROM = ("FROM propagated p JOIN answers a ON a.id = p.answer_id "
                    "LEFT JOIN undone u ON u.answer_id = p.answer_id")


class StoreError(EBNNError):
    """The store file cannot be used as asked (another dataset, another image size, not a store)."""


class AnswerError(EBNNError):
    """An answer is invalid (unknown decision, bad index, bad mask); nothing was written."""


@dataclass(frozen=True)
class Answer:
    """One row of the store: an annotator's decision about one image."""

    index: int
    decision: str
    mask: Optional[np.ndarray]  # bool H x W for "irrelevant", else None
    annotator: str
    answered_at: str  # UTC, ISO 8601
    row: int  # position in the store's append order
    #: for a mask propagated from other answers (:meth:`FeedbackStore.combined`): their rows
    propagated_from: tuple = ()

    @property
    def annotated(self) -> bool:
        """True when the answer is feedback a model can use (a mask, or an accepted explanation)."""
        return self.decision != "skipped"


@dataclass(frozen=True)
class Propagation:
    """One propagated mask: answer ``answer`` (a row of the answers table) applied to image
    ``index`` by ``rule`` with ``score``; ``detail`` holds what else the rule used (group,
    threshold). ``undone``: its answer was undone, so it no longer counts."""

    row: int
    answer: int
    index: int
    rule: str
    score: Optional[float]
    detail: dict
    mask: np.ndarray
    created_at: str
    annotator: str
    undone: bool


def _propagation_from_row(row) -> Propagation:
    row_id, answer, index, rule, score, detail, bits, height, width, created_at, annotator, undone = row
    return Propagation(row_id, answer, index, rule, score, json.loads(detail), _unpack(bits, height, width),
                       created_at, annotator, bool(undone))


def dataset_fingerprint(*parts) -> str:
    """A SHA-256 hex digest identifying a dataset, from any parts that pin it down (names, seeds,
    arrays of images or labels). Arrays count by dtype, shape and content."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            kind, data = b"str", part.encode("utf-8")
        elif isinstance(part, (bytes, bytearray)):
            kind, data = b"bytes", bytes(part)
        else:
            array = np.ascontiguousarray(np.asarray(part))
            if array.dtype.hasobject:
                raise TypeError("dataset_fingerprint: parts must be strings, bytes, numbers or numeric arrays, "
                                f"got an object array from {type(part).__name__}")
            kind, data = f"array:{array.dtype.str}:{array.shape}".encode(), array.tobytes()
        for chunk in (kind, data):
            digest.update(len(chunk).to_bytes(8, "little"))
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _pack(mask: np.ndarray) -> bytes:
    return np.packbits(mask.ravel()).tobytes()


def _unpack(bits: bytes, height: int, width: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(bits, np.uint8), count=height * width)
    return flat.reshape(height, width).astype(bool)


def _answer_from_row(row) -> Answer:
    row_id, index, annotator, decision, bits, height, width, answered_at = row
    mask = None if bits is None else _unpack(bits, height, width)
    return Answer(index, decision, mask, annotator, answered_at, row_id)


class FeedbackStore:
    """The answers about one dataset's training images, in the SQLite file ``path``.

    ``fingerprint`` identifies the dataset (see :func:`dataset_fingerprint`), ``image_shape`` is the
    images' (height, width), and ``annotator`` names who gives the answers recorded through this
    object. The object is safe to share between threads; several processes may open the same file.
    """

    def __init__(self, path, fingerprint: str, image_shape, annotator: str = "anonymous"):
        self.path = Path(path)
        self.fingerprint = self._checked_name(fingerprint, "fingerprint")
        self.annotator = self._checked_name(annotator, "annotator")
        self.image_shape = self._checked_shape(image_shape)
        self._lock = threading.Lock()
        self._db = self._connect()
        try:
            self._initialise()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise StoreError(f"{self.path} is not a feedback store ({e}); choose another file") from None
        except BaseException:
            self._db.close()
            raise

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def _checked_name(value, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise StoreError(f"the {what} must be a non-empty string, got {value!r}")
        return value

    @staticmethod
    def _checked_shape(image_shape) -> tuple[int, int]:
        shape = tuple(image_shape)
        if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
            raise StoreError(f"image_shape must be (height, width) with positive integers, got {image_shape!r}")
        return int(shape[0]), int(shape[1])

    def _connect(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory; give the store a file name, "
                             f"e.g. {self.path / 'feedback.sqlite'}")
        if not self.path.parent.is_dir():
            raise StoreError(f"the folder {self.path.parent} does not exist; create it or choose another store path")
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not a feedback store ({e}); choose another file") from None
        if mode.lower() != "wal":
            db.close()
            raise StoreError(f"{self.path}: the file system does not support SQLite's WAL journal; "
                             "put the store on a local disk")
        return db

    def _initialise(self):
        """Create the tables on first use, then check that the file was made for this dataset."""
        with self._transaction() as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - _TABLES:
                raise StoreError(f"{self.path} is an SQLite file but not a feedback store; choose another file")
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                           [("format", FORMAT_VERSION), ("fingerprint", self.fingerprint),
                            ("image_shape", f"{self.image_shape[0]}x{self.image_shape[1]}")])
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("format") in READABLE_FORMATS and meta["format"] != FORMAT_VERSION:
                # the migration: the new tables exist now (CREATE ... IF NOT EXISTS above)
                db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (FORMAT_VERSION,))
                meta["format"] = FORMAT_VERSION
            row_fingerprints = {f for (f,) in db.execute("SELECT DISTINCT fingerprint FROM answers")}
        if meta.get("format") != FORMAT_VERSION:
            raise StoreError(f"{self.path} has store format {meta.get('format')!r}, this version reads "
                             f"{', '.join(map(repr, READABLE_FORMATS))}; open it with the version that wrote it")
        others = ({meta["fingerprint"]} | row_fingerprints) - {self.fingerprint}
        if others:
            raise StoreError(f"{self.path} was made for another dataset (fingerprint {min(others)[:12]}, this "
                             f"dataset has {self.fingerprint[:12]}); choose another store file or that dataset")
        shape = f"{self.image_shape[0]}x{self.image_shape[1]}"
        if meta["image_shape"] != shape:
            raise StoreError(f"{self.path} holds masks of {meta['image_shape']} pixels, not {shape}; "
                             "choose another store file")

    def _transaction(self):
        return _Transaction(self._db, self._lock)

    def close(self):
        """Close the file (every answer is already committed)."""
        with self._lock:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing ---------------------------------------------------------------------------------

    def record(self, index: int, decision: str, mask=None) -> Answer:
        """Append this annotator's answer about image ``index`` and commit it; return it as stored.
        Raises AnswerError, writing nothing, when the answer is invalid."""
        index, decision, mask = self._checked_answer(index, decision, mask)
        with self._transaction() as db:
            (answer,) = self._insert(db, [(index, decision, mask)], self.annotator)
        return answer

    def record_propagated(self, answer, masks) -> tuple[Answer, list[Propagation]]:
        """Append masks propagated from one answer, all in one transaction with it.

        ``answer``: the row of an answer in force (not undone) of this annotator with decision
        "irrelevant", or a new answer ``(index, mask)`` of this annotator, recorded first;
        ``masks``: ``(index, mask, rule, score, detail)`` per image (``score`` a number or None,
        ``detail`` a JSON-ready dict). Returns the answer and the propagated masks as stored.
        Raises AnswerError, writing nothing, when any of them is invalid."""
        checked = []
        for entry in masks:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 5):
                raise AnswerError("a propagated mask is (index, mask, rule, score, detail); got "
                                  f"{type(entry).__name__} of {len(entry) if hasattr(entry, '__len__') else '?'}")
            index, mask, rule, score, detail = entry
            index = self._checked_answer(index, "irrelevant", mask)[0]
            if not isinstance(rule, str) or not rule.strip():
                raise AnswerError(f"the rule of a propagated mask must be a non-empty name, got {rule!r}")
            if score is not None and not (isinstance(score, (int, float, np.number)) and np.isfinite(score)):
                raise AnswerError(f"the score of a propagated mask must be a finite number or None, got {score!r}")
            try:
                text = json.dumps(detail or {}, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError):
                raise AnswerError("the detail of a propagated mask must be a JSON object of plain values") from None
            checked.append((index, self.checked_mask(mask), rule, None if score is None else float(score), text))
        if isinstance(answer, (int, np.integer)) and not isinstance(answer, (bool, np.bool_)):
            new = None
        elif isinstance(answer, (tuple, list)) and len(answer) == 2:
            new = self._checked_answer(answer[0], "irrelevant", answer[1])
        else:
            raise AnswerError(f"answer must be the row of an answer or (index, mask), got {answer!r}")
        with self._transaction() as db:
            if new is None:
                found = db.execute(f"SELECT {_COLUMNS} FROM answers WHERE id = ? AND {_IN_FORCE}",
                                   (int(answer),)).fetchone()
                if found is None:
                    raise AnswerError(f"there is no answer {answer} in force in this store; propagate from an "
                                      "answer that exists and was not undone")
                source = _answer_from_row(found)
                if source.decision != "irrelevant" or source.annotator != self.annotator:
                    raise AnswerError(f"answer {answer} is {source.annotator}'s {source.decision!r}; propagate "
                                      f"only {self.annotator}'s own answers that mark a region irrelevant")
            else:
                (source,) = self._insert(db, [(new[0], "irrelevant", new[2])], self.annotator)
            stored = []
            for index, mask, rule, score, text in checked:
                created_at = _now()
                cursor = db.execute(
                    "INSERT INTO propagated (fingerprint, answer_id, image_index, rule, score, detail, mask_bits, "
                    "mask_height, mask_width, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.fingerprint, source.row, index, rule, score, text, _pack(mask), *mask.shape, created_at))
                stored.append(Propagation(cursor.lastrowid, source.row, index, rule, score, json.loads(text), mask,
                                          created_at, self.annotator, False))
        return source, stored

    def undo(self, answer: int) -> int:
        """Undo this annotator's answer (its row) and every mask propagated from it, in one
        transaction; returns how many propagated masks were withdrawn with it. Nothing is
        deleted (module docstring). Undoing an answer twice is refused."""
        if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (int, np.integer)):
            raise AnswerError(f"undo takes the row of an answer (an integer), got {answer!r}")
        with self._transaction() as db:
            found = db.execute("SELECT annotator FROM answers WHERE id = ?", (int(answer),)).fetchone()
            if found is None:
                raise AnswerError(f"there is no answer {answer} in this store; list them with history()")
            if found[0] != self.annotator:
                raise AnswerError(f"answer {answer} is {found[0]}'s; only its annotator can undo it")
            if db.execute("SELECT 1 FROM undone WHERE answer_id = ?", (int(answer),)).fetchone():
                raise AnswerError(f"answer {answer} is undone already")
            db.execute("INSERT INTO undone (answer_id, annotator, undone_at) VALUES (?, ?, ?)",
                       (int(answer), self.annotator, _now()))
            (count,) = db.execute("SELECT COUNT(*) FROM propagated WHERE answer_id = ?", (int(answer),)).fetchone()
        return int(count)

    def _checked_answer(self, index, decision, mask):
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or index < 0:
            raise AnswerError(f"the image index must be a non-negative integer, got {index!r}")
        if decision not in DECISIONS:
            raise AnswerError(f"unknown decision {decision!r}; use one of {', '.join(DECISIONS)}")
        if decision != "irrelevant":
            if mask is not None:
                raise AnswerError(f"the decision {decision!r} takes no mask; send the mask with decision 'irrelevant'")
            return int(index), decision, None
        if mask is None:
            raise AnswerError("an 'irrelevant' answer needs a mask of the regions marked irrelevant")
        return int(index), decision, self.checked_mask(mask)

    def checked_mask(self, mask) -> np.ndarray:
        """``mask`` as bool H x W, or AnswerError: it must be binary, of the image's size, non-empty."""
        array = np.asarray(mask)
        if array.shape != self.image_shape:
            raise AnswerError(f"the mask must have the image's size {self.image_shape[0]} x {self.image_shape[1]} "
                              f"(height x width), got shape {array.shape}")
        if array.dtype != bool:
            if array.dtype.kind not in "biuf":
                raise AnswerError(f"the mask must hold numbers 0 and 1, got dtype {array.dtype}")
            if not np.isin(array, (0, 1)).all():
                raise AnswerError("the mask must be binary (1 = irrelevant, 0 = not marked), found other values")
            array = array.astype(bool)
        if not array.any():
            raise AnswerError("the mask marks no pixel; mark the irrelevant regions, or answer 'accepted' or 'skipped'")
        return array

    def _insert(self, db, answers, annotator: str) -> list[Answer]:
        """Insert checked (index, decision, mask) answers inside the open transaction ``db``."""
        stored = []
        for index, decision, mask in answers:
            answered_at = _now()
            bits, height, width = (None, None, None) if mask is None else (_pack(mask), *mask.shape)
            cursor = db.execute(
                "INSERT INTO answers (fingerprint, image_index, annotator, decision, mask_bits, mask_height, "
                "mask_width, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.fingerprint, index, annotator, decision, bits, height, width, answered_at))
            stored.append(Answer(index, decision, mask, annotator, answered_at, cursor.lastrowid))
        return stored

    # -- reading ---------------------------------------------------------------------------------

    def _query(self, sql: str, params=()) -> list[Answer]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [_answer_from_row(row) for row in rows]

    def answer(self, index: int) -> Optional[Answer]:
        """This annotator's answer about image ``index`` (their latest not undone), or None."""
        found = self._query(f"SELECT {_COLUMNS} FROM answers WHERE annotator = ? AND image_index = ? "
                            f"AND {_IN_FORCE} ORDER BY id DESC LIMIT 1", (self.annotator, int(index)))
        return found[0] if found else None

    def answers(self) -> dict[int, Answer]:
        """This annotator's answers, by image index."""
        latest = self._query(_LATEST_PER_ANNOTATOR + " AND annotator = ? ORDER BY image_index", (self.annotator,))
        return {a.index: a for a in latest}

    def answered(self) -> set[int]:
        """The images this annotator has answered (skips included, undone answers not)."""
        with self._lock:
            rows = self._db.execute(f"SELECT DISTINCT image_index FROM answers WHERE annotator = ? AND {_IN_FORCE}",
                                    (self.annotator,)).fetchall()
        return {index for (index,) in rows}

    def combined(self, propagated: bool = True) -> dict[int, Answer]:
        """Per image, the most recent non-skipped answer among every annotator's latest answers
        (undone ones left out), else, with ``propagated``, the union of the masks propagated to it
        from answers in force (decision "irrelevant", annotator "<who> (propagated)",
        ``propagated_from`` their answers' rows), else the most recent skip. (An annotator's own
        later skip withdraws their earlier answer; another annotator's skip does not.)"""
        best: dict[int, Answer] = {}
        for answer in self._query(_LATEST_PER_ANNOTATOR + " ORDER BY id"):
            current = best.get(answer.index)
            if current is None or answer.annotated or not current.annotated:
                best[answer.index] = answer
        if propagated:
            by_image: dict[int, list[Propagation]] = {}
            for p in self.propagated():
                by_image.setdefault(p.index, []).append(p)
            for index, found in by_image.items():
                if index in best and best[index].annotated:
                    continue
                mask = np.logical_or.reduce([p.mask for p in found])
                who = " + ".join(dict.fromkeys(p.annotator for p in found))
                best[index] = Answer(index, "irrelevant", mask, f"{who} (propagated)", found[-1].created_at,
                                     found[-1].row, tuple(sorted({p.answer for p in found})))
        return dict(sorted(best.items()))

    def propagated(self, answer: Optional[int] = None, include_undone: bool = False) -> list[Propagation]:
        """The propagated masks, oldest first: of the answer with row ``answer`` only when given,
        and only those in force unless ``include_undone``."""
        where = [] if include_undone else ["u.answer_id IS NULL"]
        params = ()
        if answer is not None:
            where.append("p.answer_id = ?")
            params = (int(answer),)
        sql = f"SELECT {_PROPAGATED_COLUMNS} {_PROPAGATED_FROM}" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY p.id", params).fetchall()
        return [_propagation_from_row(row) for row in rows]

    def undone(self) -> set[int]:
        """The rows of the answers that were undone (by anyone)."""
        with self._lock:
            return {row for (row,) in self._db.execute("SELECT answer_id FROM undone").fetchall()}

    def history(self, index: Optional[int] = None) -> list[Answer]:
        """Every row, oldest first (of image ``index`` only, when given), undone ones included
        (:meth:`undone` names them)."""
        if index is None:
            return self._query(f"SELECT {_COLUMNS} FROM answers ORDER BY id")
        return self._query(f"SELECT {_COLUMNS} FROM answers WHERE image_index = ? ORDER BY id", (int(index),))

    def annotators(self) -> list[str]:
        """Everyone who has answered in this store, in order of their first answer."""
        with self._lock:
            rows = self._db.execute("SELECT annotator FROM answers GROUP BY annotator ORDER BY MIN(id)").fetchall()
        return [name for (name,) in rows]

    # -- the project's .npz mask layout ----------------------------------------------------------

    def export_npz(self, path, num_images: int, combined: bool = True) -> Path:
        """Write the answers as the project's mask file: ``train_masks`` (uint8 N x 1 x H x W, 1 =
        irrelevant), ``annotated`` (bool N: an image has a mask or an accepted explanation),
        ``decision`` and ``annotator`` (N strings, "" where unanswered) and ``fingerprint``.
        ``combined`` takes every annotator's answers (see :meth:`combined`), else only this
        annotator's. The file is replaced atomically."""
        answers = self.combined() if combined else self.answers()
        outside = [i for i in answers if i >= num_images]
        if outside:
            raise StoreError(f"the store has answers for image {max(outside)} but num_images is {num_images}; "
                             "pass the dataset's number of training images")
        masks = np.zeros((num_images, 1) + self.image_shape, np.uint8)
        decision, annotator = [""] * num_images, [""] * num_images
        for i, answer in answers.items():
            decision[i], annotator[i] = answer.decision, answer.annotator
            if answer.mask is not None:
                masks[i, 0] = answer.mask
        decision, annotator = np.array(decision, dtype=str), np.array(annotator, dtype=str)
        path = Path(path)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as f:
            np.savez_compressed(f, train_masks=masks, annotated=np.isin(decision, ("irrelevant", "accepted")),
                                decision=decision, annotator=annotator, fingerprint=np.array(self.fingerprint))
        os.replace(f.name, path)
        return path

    def import_npz(self, path) -> int:
        """Record the answers of a mask file as annotator ``import:<file name>``, all in one
        transaction; an image whose answer equals that annotator's current one is left alone.
        Reads ``train_masks`` and, where present, ``annotated``, ``decision`` and ``fingerprint``.
        Without ``decision``, a non-empty mask means "irrelevant" and an empty mask of an annotated
        image "accepted". Returns the number of answers recorded."""
        path = Path(path)
        annotator = f"import:{path.name}"
        answers = []
        for index, decision, mask in self._read_npz(path):
            try:
                answers.append(self._checked_answer(index, decision, mask))
            except AnswerError as e:
                raise StoreError(f"{path}: image {index}: {e}") from None
        with self._transaction() as db:
            current = {a.index: a for a in (_answer_from_row(r) for r in db.execute(
                _LATEST_PER_ANNOTATOR + " AND annotator = ?", (annotator,)))}
            new = [a for a in answers if not _same(current.get(a[0]), a)]
            self._insert(db, new, annotator)
        return len(new)

    def _read_npz(self, path: Path) -> list[tuple]:
        """The (index, decision, mask) answers of a mask file, checked against this store."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("train_masks", "annotated", "decision", "fingerprint") if k in data}
        except FileNotFoundError:
            raise StoreError(f"{path} does not exist; give the path of an .npz mask file") from None
        except (ValueError, OSError) as e:
            raise StoreError(f"cannot read {path} as .npz ({e}); save it with numpy.savez") from None
        if "train_masks" not in arrays:
            raise StoreError(f"{path} has no train_masks array; it needs train_masks (N x 1 x H x W, binary)")
        if "fingerprint" in arrays and str(arrays["fingerprint"]) != self.fingerprint:
            raise StoreError(f"{path} was made for another dataset (fingerprint {str(arrays['fingerprint'])[:12]}, "
                             f"this store has {self.fingerprint[:12]}); import it into that dataset's store")
        masks = arrays["train_masks"]
        n = len(masks)
        if masks.shape != (n, 1) + self.image_shape:
            raise StoreError(f"{path}: train_masks must have shape N x 1 x {self.image_shape[0]} x "
                             f"{self.image_shape[1]}, got {masks.shape}")
        if masks.dtype.kind not in "biuf" or not np.isin(masks, (0, 1)).all():
            raise StoreError(f"{path}: train_masks must be binary (1 = irrelevant), found other values")
        masks = masks[:, 0].astype(bool)
        for key in ("annotated", "decision"):
            if key in arrays and arrays[key].shape != (n,):
                raise StoreError(f"{path}: {key} must have one entry per image ({n}), got shape {arrays[key].shape}")
        if "decision" in arrays:
            decisions = [str(d) for d in arrays["decision"]]
        elif "annotated" in arrays:
            decisions = [("irrelevant" if m.any() else "accepted") if a else ("irrelevant" if m.any() else "")
                         for a, m in zip(arrays["annotated"].astype(bool), masks)]
        else:
            decisions = ["irrelevant" if m.any() else "" for m in masks]
        bad = sorted({d for d in decisions if d and d not in DECISIONS})
        if bad:
            raise StoreError(f"{path}: unknown decision {bad[0]!r}; use one of {', '.join(DECISIONS)} "
                             "or '' (unanswered)")
        return [(i, d, masks[i] if d == "irrelevant" or masks[i].any() else None)
                for i, d in enumerate(decisions) if d]


def _same(answer: Optional[Answer], new: tuple) -> bool:
    index, decision, mask = new
    if answer is None or answer.decision != decision:
        return False
    return mask is None or np.array_equal(answer.mask, mask)


class _Transaction:
    """``with``: BEGIN IMMEDIATE (take the write lock up front) ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb):
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.lock.release()
