"""The annotation page: a local web app where a person reviews the model's explanations of its
training predictions and marks the regions that should not matter, into a FeedbackStore.

``task`` is any object with

    indices: list[int]                         the images to annotate, in the order to show them
    class_names: list[str]
    image(index) -> H x W x C floats in [0, 1] (C = 1 or 3)
    prediction(index) -> {"probs", "predicted", "label" (int or None), "entropy", "mutual_information"}
    heatmap(index) -> H x W floats             the explanation, signed or not
    regions(index) -> (H x W int segment labels, candidate segment ids)
    class_heatmaps() -> (K x H x W, K counts)  optional: per class, the mean explanation of the images
                                               predicted as it, and how many there are

Its methods are called once per image (results are cached) and never concurrently, so a model
that is not thread-safe can serve them.

JSON API (every request carries the token, when there is one, as ``?token=`` or the header
``X-Annotate-Token``):

    GET  /api/items                      the images in order, each with this annotator's decision;
                                         progress, class names, annotator, the command to run next
    GET  /api/items/<index>              prediction, heat-map range, segments (flat, row-major),
                                         candidate region ids, this annotator's saved answer
    GET  /api/items/<index>/image.png    the image at its own resolution
    GET  /api/items/<index>/heatmap.png  the explanation as RGBA (colour map, opacity = strength),
                                         clipped to the 1st-99th percentile of its magnitude
    GET  /api/heatmap-scale.png?signed=1 the colour scale of the heat maps, low to high (1 x 256)
    GET  /api/classes                    per predicted class: name and number of images (needs the
                                         task's class_heatmaps)
    GET  /api/classes/<k>/heatmap.png    the mean explanation of the images predicted as class k
    POST /api/items/<index>/answer       {"decision": "irrelevant" | "accepted" | "skipped",
                                          "mask": <mask> (with "irrelevant" only)}

The decisions are the store's words: ``irrelevant`` (the marked regions should not matter),
``accepted`` (the explanation is accepted as it is) and ``skipped``. The page's button that marks
every proposed region (the candidate regions) at once only marks them; it records nothing until the
annotator saves them as irrelevant.

A mask travels as ``{"shape": [H, W], "bits": base64(numpy.packbits(mask.ravel()))}`` (row-major,
most significant bit first, zero padding), or as a nested list of 0/1 rows for scripts.
Errors are ``{"error": "<one line>"}`` with a 4xx status, and write nothing: a body over
``MAX_BODY_BYTES`` (also when sent in chunks) is 413, and a body that is not an answer's JSON
(nested too deeply, for one) is 400. Every response carries a Content-Security-Policy that allows the app's own origin
only, ``X-Frame-Options: DENY`` and ``X-Content-Type-Options: nosniff``.
"""
from __future__ import annotations

import hmac
import ipaddress
import socket
import threading
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote

import numpy as np
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.serving import WSGIRequestHandler, make_server

from ..errors import EBNNError
from .groups import add_discovery
from .wire import (MaskEncodingError, decode_mask, encode_mask, error_response, heat_range, heat_rgba,
                   heat_scale, png)

__all__ = ["AnnotateError", "MaskEncodingError", "create_app", "serve", "serving_in_background", "page_url", "is_loopback", "encode_mask",
           "decode_mask", "TOKEN_HEADER", "MAX_BODY_BYTES", "SECURITY_HEADERS"]

TOKEN_HEADER = "X-Annotate-Token"
MAX_BODY_BYTES = 1 << 20
#: the headers of every response: nothing from another origin, no framing, no type sniffing
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
TOP_CLASSES = 5
CACHED_ITEMS = 512


class AnnotateError(EBNNError):
    """The annotation page cannot start as asked."""


class _NoClassMaps(EBNNError):
    """The task has no per-class explanations."""


# -- what the page shows, computed once per image ---------------------------------------------

def _prediction(raw: dict, class_names: list[str]) -> dict:
    probs = [float(p) for p in raw["probs"]]
    label = raw.get("label")
    predicted = int(raw["predicted"])
    top = sorted(range(len(probs)), key=lambda k: -probs[k])[:TOP_CLASSES]
    return {"probs": probs, "predicted": predicted, "predicted_name": class_names[predicted],
            "label": None if label is None else int(label),
            "label_name": None if label is None else class_names[int(label)],
            "entropy": float(raw["entropy"]), "mutual_information": float(raw["mutual_information"]),
            "top": [{"class": k, "name": class_names[k], "prob": probs[k]} for k in top]}


class _Items:
    """The task's results per image, cached; the task is called under one lock."""

    def __init__(self, task):
        self.task = task
        self.lock = threading.RLock()
        self.indices = [int(i) for i in task.indices]
        self.position = {index: pos for pos, index in enumerate(self.indices)}
        self.class_names = [str(name) for name in task.class_names]
        self._image = lru_cache(CACHED_ITEMS)(lambda i: np.asarray(task.image(i), dtype=float))
        self._heat = lru_cache(CACHED_ITEMS)(lambda i: np.asarray(task.heatmap(i), dtype=float))
        self._item = lru_cache(CACHED_ITEMS)(self._describe)
        self._image_png = lru_cache(CACHED_ITEMS)(self._encode_image)
        self._heat_png = lru_cache(CACHED_ITEMS)(lambda i: png(heat_rgba(self._heat(i))))
        self._class_pngs = None

    def _locked(self, cached, index):
        with self.lock:
            return cached(index)

    def image(self, index):
        return self._locked(self._image, index)

    def item(self, index) -> dict:
        return self._locked(self._item, index)

    def image_png(self, index) -> bytes:
        return self._locked(self._image_png, index)

    def heat_png(self, index) -> bytes:
        return self._locked(self._heat_png, index)

    def class_pngs(self) -> list[tuple[int, bytes]]:
        """Per class: (images predicted as it, its mean explanation as a heat-map PNG); computed once."""
        with self.lock:
            if self._class_pngs is None:
                if not hasattr(self.task, "class_heatmaps"):
                    raise _NoClassMaps("this task has no per-class explanations (a task method class_heatmaps)")
                maps, counts = (np.asarray(a) for a in self.task.class_heatmaps())
                if maps.ndim != 3 or counts.shape != (len(self.class_names),) or len(maps) != len(counts):
                    raise AnnotateError(f"class_heatmaps must return K x H x W maps and K counts for the "
                                        f"{len(self.class_names)} classes, got {maps.shape} and {counts.shape}")
                self._class_pngs = [(int(n), png(heat_rgba(m.astype(float)))) for m, n in zip(maps, counts)]
            return self._class_pngs

    def _encode_image(self, index) -> bytes:
        """8-bit RGB, rounded (grey images repeat their channel)."""
        image = np.round(np.clip(self._image(index), 0, 1) * 255).astype(np.uint8)
        return png(np.repeat(image, 3 // image.shape[2], axis=2))

    def _describe(self, index) -> dict:
        """Everything the page needs about one image except its answer (JSON-ready)."""
        image, heat = self._image(index), self._heat(index)
        segments, candidates = self.task.regions(index)
        segments = np.asarray(segments)
        height, width, channels = image.shape
        if heat.shape != (height, width) or segments.shape != (height, width):
            raise AnnotateError(f"image {index}: the heat map {heat.shape} and segments {segments.shape} must "
                                f"have the image's size {(height, width)}")
        signed, low, high = heat_range(heat)
        pos = self.position[index]
        return {"index": index, "position": pos, "total": len(self.indices),
                "previous": self.indices[pos - 1] if pos > 0 else None,
                "next": self.indices[pos + 1] if pos + 1 < len(self.indices) else None,
                "height": height, "width": width, "channels": channels,
                "prediction": _prediction(self.task.prediction(index), self.class_names),
                "heatmap": {"signed": signed, "low": low, "high": high},
                "segments": segments.astype(int).ravel().tolist(),
                "candidates": sorted({int(c) for c in candidates})}


# -- the app ------------------------------------------------------------------------------------

def _answer_json(answer) -> dict | None:
    if answer is None:
        return None
    return {"decision": answer.decision, "annotator": answer.annotator, "answered_at": answer.answered_at,
            "mask": None if answer.mask is None else encode_mask(answer.mask)}


def _check_task(items: _Items, store):
    if not items.indices:
        raise AnnotateError("the task has no images to annotate; choose a non-empty selection")
    if len(items.position) != len(items.indices):
        raise AnnotateError("the task lists an image twice; give each index once")
    image = items.image(items.indices[0])
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise AnnotateError(f"task.image must return H x W x C with C = 1 or 3, got shape {image.shape}")
    if image.shape[:2] != store.image_shape:
        raise AnnotateError(f"the images are {image.shape[0]} x {image.shape[1]} but the store holds masks of "
                            f"{store.image_shape[0]} x {store.image_shape[1]}; open the dataset's own store")


def create_app(task, store, token: str | None = None, next_command: str | None = None,
               start_command: str | None = None, discovery=None) -> Flask:
    """The annotation app: the page and its JSON API over ``task``, answers recorded in ``store``
    (a :class:`pyro_ebnn.data.store.FeedbackStore`) as its annotator. With a ``token``, every
    request must carry it. ``next_command`` is shown on the finished screen, ``start_command``
    (the command that serves this page again) when the page cannot reach its server. With a
    ``discovery`` (:class:`~pyro_ebnn.annotate.discovery.Discovery`), the page links to its
    discovery view, the groups of the pool's explanations (:mod:`~pyro_ebnn.annotate.groups`)."""
    if token is not None and not token:
        raise AnnotateError("the token is empty; pass None for no token, or a secret such as secrets.token_urlsafe(16)")
    items = _Items(task)
    _check_task(items, store)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False

    def progress() -> dict:
        answers = store.answers()
        decisions = [answers[i].decision if i in answers else None for i in items.indices]
        counts = {d: decisions.count(d) for d in ("irrelevant", "accepted", "skipped")}
        return {"answered": sum(counts.values()), "total": len(decisions), "counts": counts,
                "decisions": decisions}

    def known(index: int):
        if index not in items.position:
            return error_response(404, f"no image {index} to annotate; the images are listed at /api/items")
        return None

    @app.before_request
    def require_token():
        if request.path == "/favicon.ico":  # asked for by the browser without the token: no icon, no error
            return app.response_class(status=204)
        if token is None:
            return None
        given = request.args.get("token") or request.headers.get(TOKEN_HEADER)
        if given is None:
            return error_response(401, "this page needs its token: open the address that was printed when it started "
                               f"(…/?token=…), or send the header {TOKEN_HEADER}")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(403, "wrong token: open the address that was printed when the page started")
        return None

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {413: f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes; "
                         "send one mask per request, packed as base64 bits"}
        return error_response(error.code, messages.get(error.code, f"{error.name}: {error.description}"))

    @app.errorhandler(EBNNError)
    def task_error(error: EBNNError):
        return error_response(500, str(error))

    @app.after_request
    def headers(response):
        if response.mimetype == "application/json":
            response.headers["Cache-Control"] = "no-store"
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.get("/")
    def page():
        return render_template("annotate.html", token=token, groups=discovery is not None)

    if discovery is not None:
        add_discovery(app, store, discovery)

    @app.get("/api/items")
    def list_items():
        state = progress()
        return jsonify(items=[{"index": i, "decision": d} for i, d in zip(items.indices, state.pop("decisions"))],
                       progress=state, class_names=items.class_names, annotator=store.annotator,
                       store=str(store.path), next_command=next_command, start_command=start_command)

    @app.get("/api/items/<int:index>")
    def item(index: int):
        return known(index) or jsonify(dict(items.item(index), answer=_answer_json(store.answer(index))))

    @app.get("/api/items/<int:index>/image.png")
    def image_png(index: int):
        return known(index) or app.response_class(items.image_png(index), mimetype="image/png",
                                                  headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/items/<int:index>/heatmap.png")
    def heatmap_png(index: int):
        return known(index) or app.response_class(items.heat_png(index), mimetype="image/png",
                                                  headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/heatmap-scale.png")
    def heatmap_scale_png():
        return app.response_class(png(heat_scale(request.args.get("signed") == "1")), mimetype="image/png",
                                  headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/classes")
    def classes():
        try:
            found = items.class_pngs()
        except _NoClassMaps as e:
            return error_response(404, str(e))
        return jsonify(classes=[{"class": k, "name": name, "images": n}
                                for k, (name, (n, _)) in enumerate(zip(items.class_names, found))])

    @app.get("/api/classes/<int:k>/heatmap.png")
    def class_heatmap_png(k: int):
        try:
            found = items.class_pngs()
        except _NoClassMaps as e:
            return error_response(404, str(e))
        if not 0 <= k < len(found):
            return error_response(404, f"no class {k}; the classes are 0 to {len(found) - 1}, listed at /api/classes")
        return app.response_class(found[k][1], mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/items/<int:index>/answer")
    def answer(index: int):
        unknown = known(index)
        if unknown:
            return unknown
        if not request.is_json:
            return error_response(415, "send the answer as JSON with the header Content-Type: application/json")
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is None and len(request.get_data()) >= limit:
            raise RequestEntityTooLarge()  # a chunked body: werkzeug stops reading it at the limit
        try:
            body = request.get_json()
        except BadRequest:
            return error_response(400, 'the body is not valid JSON; send {"decision": ..., "mask": ...}')
        except RecursionError:
            return error_response(400, 'the JSON is nested too deeply; an answer is {"decision": ..., "mask": ...}, '
                               "three levels at most")
        if not isinstance(body, dict):
            return error_response(400, 'the body must be a JSON object: {"decision": ..., "mask": ...}')
        extra = sorted(set(body) - {"decision", "mask"})
        if extra:
            return error_response(400, f"unknown field {extra[0]!r}; an answer has only 'decision' and 'mask'")
        try:
            mask = None if body.get("mask") is None else decode_mask(body["mask"])
            saved = store.record(index, body.get("decision"), mask)
        except EBNNError as e:
            return error_response(400, str(e))
        state = progress()
        decisions = state.pop("decisions")
        after = items.position[index]
        order = items.indices[after + 1:] + items.indices[:after + 1]
        pending = [i for i in order if decisions[items.position[i]] is None]
        return jsonify(answer=_answer_json(saved), progress=state, next_unanswered=pending[0] if pending else None)

    return app


# -- serving ------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_url(host: str, port: int, token: str | None = None) -> str:
    """The address to open (a wildcard host is shown as this machine's name)."""
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(task, store, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          next_command: str | None = None, start_command: str | None = None, discovery=None):
    """Serve the annotation page until interrupted (Ctrl+C), printing its address. Any host other
    than loopback needs a token, and is told in one line that the page is plain HTTP.
    ``port=0`` picks a free port. ``start_command`` and ``discovery`` are passed to :func:`create_app`."""
    if not is_loopback(host) and not token:
        raise AnnotateError(f"serving on {host} exposes the page to the network; pass a token, e.g. "
                            "token=secrets.token_urlsafe(16), or serve on 127.0.0.1")
    app = create_app(task, store, token=token, next_command=next_command, start_command=start_command,
                     discovery=discovery)
    with _listen(host, port) as listening:
        server = make_server(host, port, app, threaded=True, fd=listening.fileno(), request_handler=_QuietHandler)
        print(f"Annotation page: {page_url(host, server.port, token)}  (answers are saved as they are "
              f"given, in {store.path}; Ctrl+C stops)", flush=True)
        if not is_loopback(host):
            print(f"Note: the page on {host} is plain HTTP, unencrypted: the token and the answers travel in clear; "
                  "on a network you do not trust, serve on 127.0.0.1 and reach it through ssh -L", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@contextmanager
def serving_in_background(app, port: int = 0, request_handler=None):
    """Serve ``app`` on 127.0.0.1:``port`` (0: any free port) from a background thread while the
    block runs; yields the base address. For scripts and tests that drive the page in a browser."""
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=request_handler or _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(WSGIRequestHandler):
    """Logs errors but not every request (the annotator's terminal stays readable)."""

    def log_request(self, *args, **kwargs):
        pass


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or AnnotateError naming the fix."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise AnnotateError(f"cannot serve on {host} ({e.strerror or e}); give an address of this machine") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(64)
    except OSError as e:
        listening.close()
        raise AnnotateError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another port, "
                            "or 0 for a free one") from None
    return listening
