"""The page's discovery view: the groups of images whose explanations look alike
(:mod:`~pyro_ebnn.annotate.discovery`), best first; a person marks a region once on a group (on
its mean map, or on one of its images) and the mark is propagated to the group's images, or to
every pool image that looks the same; each propagated mask is listed with its provenance and the
answer is undone, with everything propagated from it, in one action.

Routes (added to the app of :func:`~pyro_ebnn.annotate.server.create_app` when it is given a
discovery; the token rule, the headers and the error format are the app's):

    GET  /groups                           the view
    GET  /api/groups                       the groups, best first: class, size, concentration,
                                           consistency, score, this annotator's answers in force
    GET  /api/groups/<key>                 one group: its mean map's size, segments and proposed
                                           regions, heat-map range, members (most typical first),
                                           the dozen shown, the answers in force with their counts
    GET  /api/groups/<key>/image.png       the mean of the shown images
    GET  /api/groups/<key>/heatmap.png     the mean map, coloured as the page's heat maps
    GET  /api/pool/<index>                 one pool image to mark on: size, segments, proposals
    GET  /api/pool/<index>/image.png       a pool image
    GET  /api/pool/<index>/heatmap.png     its explanation
    POST /api/groups/<key>/answer          {"mask": <mask>, "rule": "place" | "pixels" | "features",
                                            "source": null | <index of a member it was drawn on>}
                                           -> the answer and the masks propagated from it
    GET  /api/answers/<row>/propagated     the masks propagated from an answer (with the masks)
    POST /api/answers/<row>/undo           undo the answer and everything propagated from it

The answer is recorded as this annotator's answer about the image the mark was drawn on (the
group's representative for a mark on the mean map), with its propagated masks in the same
transaction (:meth:`~pyro_ebnn.data.store.FeedbackStore.record_propagated`); the image it was
drawn on always gets one, so every answer of the view is found again from its group.
"""
from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from flask import jsonify, render_template, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

from ..errors import EBNNError
from .discovery import FEATURE_THRESHOLD, PIXEL_THRESHOLD, RULES, Discovery, map_regions
from .wire import decode_mask, encode_mask, error_response, heat_range, heat_rgba, png

__all__ = ["add_discovery", "PROPAGATED_SHOWN"]

#: propagated masks listed per answer without asking for all
PROPAGATED_SHOWN = 48
_IMAGE_CACHE = {"Cache-Control": "private, max-age=3600"}


def _rgb_png(image: np.ndarray) -> bytes:
    """8-bit RGB (grey images repeat their channel)."""
    image = np.round(np.clip(np.asarray(image, dtype=float), 0, 1) * 255).astype(np.uint8)
    image = image[..., None] if image.ndim == 2 else image
    return png(np.repeat(image, 3 // image.shape[2], axis=2))


def _regions_json(heat: np.ndarray, image: np.ndarray) -> dict:
    """What the marking tools need about one map: size, segments, proposals, heat-map range."""
    segments, ids = map_regions(heat, image)
    signed, low, high = heat_range(heat)
    height, width = heat.shape
    return {"height": height, "width": width, "channels": int(np.asarray(image).shape[-1]) if np.ndim(image) == 3 else 1,
            "segments": segments.astype(int).ravel().tolist(), "candidates": [int(i) for i in ids],
            "heatmap": {"signed": signed, "low": low, "high": high}}


def _propagation_json(p, with_mask: bool = False) -> dict:
    found = {"row": p.row, "answer": p.answer, "index": p.index, "rule": p.rule, "score": p.score,
             "detail": p.detail, "pixels": int(p.mask.sum()), "undone": p.undone}
    if with_mask:
        found["mask"] = encode_mask(p.mask)
    return found


def add_discovery(app, store, discovery: Discovery):
    """Add the discovery view's routes (module docstring) to the annotation ``app``, answers into
    ``store``."""
    lock = threading.RLock()

    def locked(function):
        def call(*args):
            with lock:
                return function(*args)
        return call

    mean_image = locked(lru_cache(maxsize=None)(lambda key: discovery.mean_image(discovery.group(key))))
    group_png = locked(lru_cache(maxsize=None)(lambda key: _rgb_png(mean_image(key))))
    group_heat_png = locked(lru_cache(maxsize=None)(lambda key: png(heat_rgba(discovery.group(key).mean_map))))
    group_regions = locked(lru_cache(maxsize=None)(lambda key: _regions_json(discovery.group(key).mean_map,
                                                                             mean_image(key))))
    pool_png = locked(lru_cache(maxsize=1024)(lambda i: _rgb_png(discovery.image(i))))
    pool_heat_png = locked(lru_cache(maxsize=1024)(lambda i: png(heat_rgba(discovery.map(i)))))
    pool_regions = locked(lru_cache(maxsize=256)(lambda i: _regions_json(discovery.map(i), discovery.image(i))))
    groups = locked(discovery.groups)
    in_pool = locked(lambda i: int(i) in set(discovery.indices.tolist()))

    def answers_by_group() -> dict:
        """{group key: [{answer, rule, propagated, source}]} of this annotator's answers in force."""
        found: dict = {}
        for p in store.propagated():
            key = p.detail.get("group")
            if key is None or p.annotator != store.annotator:
                continue
            entry = found.setdefault(key, {}).setdefault(p.answer, {"answer": p.answer, "rule": p.rule,
                                                                    "source": p.detail.get("source"),
                                                                    "propagated": 0})
            entry["propagated"] += 1
        return {key: list(by_answer.values()) for key, by_answer in found.items()}

    def group_json(group, marked) -> dict:
        return {"key": group.key, "class": group.cls, "class_name": discovery.class_names[group.cls],
                "size": group.size, "concentration": group.concentration, "consistency": group.consistency,
                "score": group.score, "answers": marked.get(group.key, [])}

    def unknown_group(key: str):
        with lock:
            found = discovery.group(key)
        return None if found is not None else error_response(404, f"no group {key!r}; the groups are listed at /api/groups")

    def unknown_image(index: int):
        return None if in_pool(index) else error_response(404, f"image {index} is not in the pool; the groups' images are "
                                                       "listed at /api/groups/<key>")

    def png_response(data: bytes):
        return app.response_class(data, mimetype="image/png", headers=_IMAGE_CACHE)

    def body_json():
        """The request's JSON object, or the 4xx response that refuses it."""
        if not request.is_json:
            return None, error_response(415, "send the answer as JSON with the header Content-Type: application/json")
        if request.content_length is None and len(request.get_data()) >= app.config["MAX_CONTENT_LENGTH"]:
            raise RequestEntityTooLarge()
        try:
            body = request.get_json()
        except BadRequest:
            return None, error_response(400, 'the body is not valid JSON; send {"mask": ..., "rule": ..., "source": ...}')
        except RecursionError:
            return None, error_response(400, 'the JSON is nested too deeply; a group answer is {"mask": ..., "rule": ..., '
                                     '"source": ...}')
        if not isinstance(body, dict):
            return None, error_response(400, 'the body must be a JSON object: {"mask": ..., "rule": ..., "source": ...}')
        return body, None

    @app.get("/groups")
    def groups_page():
        return render_template("groups.html", token=request.args.get("token"))

    @app.get("/api/groups")
    def list_groups():
        marked = answers_by_group()
        return jsonify(groups=[group_json(g, marked) for g in groups()], rules=list(RULES),
                       features=discovery.has_features, annotator=store.annotator, store=str(store.path),
                       thresholds={"pixels": PIXEL_THRESHOLD, "features": FEATURE_THRESHOLD})

    @app.get("/api/groups/<key>")
    def group(key: str):
        missing = unknown_group(key)
        if missing:
            return missing
        found = discovery.group(key)
        return jsonify(dict(group_json(found, answers_by_group()), **group_regions(key), members=list(found.members),
                            shown=found.shown(), representative=found.representative))

    @app.get("/api/groups/<key>/image.png")
    def group_image(key: str):
        return unknown_group(key) or png_response(group_png(key))

    @app.get("/api/groups/<key>/heatmap.png")
    def group_heatmap(key: str):
        return unknown_group(key) or png_response(group_heat_png(key))

    @app.get("/api/pool/<int:index>")
    def pool_item(index: int):
        return unknown_image(index) or jsonify(dict(pool_regions(index), index=index))

    @app.get("/api/pool/<int:index>/image.png")
    def pool_image(index: int):
        return unknown_image(index) or png_response(pool_png(index))

    @app.get("/api/pool/<int:index>/heatmap.png")
    def pool_heatmap(index: int):
        return unknown_image(index) or png_response(pool_heat_png(index))

    @app.post("/api/groups/<key>/answer")
    def group_answer(key: str):
        missing = unknown_group(key)
        if missing:
            return missing
        body, refused = body_json()
        if refused:
            return refused
        extra = sorted(set(body) - {"mask", "rule", "source"})
        if extra:
            return error_response(400, f"unknown field {extra[0]!r}; a group answer has only 'mask', 'rule' and 'source'")
        rule, source = body.get("rule", "place"), body.get("source")
        if rule not in RULES:
            return error_response(400, f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
        if source is not None and (isinstance(source, bool) or not isinstance(source, int)):
            return error_response(400, f"source must be null (the mean map) or the index of the image marked on, got {source!r}")
        if body.get("mask") is None:
            return error_response(400, "the answer needs a mask: mark the region on the group first")
        found = discovery.group(key)
        try:
            mask = store.checked_mask(decode_mask(body["mask"]))
            with lock:
                masks = discovery.propagate(found, mask, rule, source=source)
            origin = found.representative if source is None else int(source)
            if origin not in {i for i, *_ in masks}:   # the image drawn on always carries its answer's mark
                masks.append((origin, mask, rule, None, {"group": key, "source": source}))
            answer, stored = store.record_propagated((origin, mask), masks)
        except EBNNError as e:
            return error_response(400, str(e))
        return jsonify(answer={"row": answer.row, "index": answer.index, "decision": answer.decision,
                               "annotator": answer.annotator, "answered_at": answer.answered_at,
                               "mask": encode_mask(answer.mask)},
                       group=key, rule=rule, count=len(stored),
                       propagated=[_propagation_json(p) for p in stored[:PROPAGATED_SHOWN]])

    @app.get("/api/answers/<int:row>/propagated")
    def propagated(row: int):
        found = store.propagated(row, include_undone=True)
        if not found:
            return error_response(404, f"no mask was propagated from answer {row}; the groups' answers are listed at "
                               "/api/groups")
        limit = request.args.get("limit", str(PROPAGATED_SHOWN))
        if not limit.isdigit():
            return error_response(400, f"limit must be a number of masks, got {limit!r}")
        return jsonify(answer=row, undone=found[0].undone, count=len(found),
                       propagated=[_propagation_json(p, with_mask=True) for p in found[:int(limit)]])

    @app.post("/api/answers/<int:row>/undo")
    def undo(row: int):
        try:
            count = store.undo(row)
        except EBNNError as e:
            message = str(e)
            return error_response(404 if "there is no answer" in message else 409 if "already" in message else 403
                          if "only its annotator" in message else 400, message)
        return jsonify(undone=row, propagated=count)
