"""The annotation page's JSON API: what it serves, what it records, the bad requests it refuses
without touching the store, the headers of every response, the token rule and the token kept
beside the store."""
import base64
import io
import os
import socket

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread

from annotate_fixtures import FakeTask, fake_store
from pyro_ebnn.annotate.server import (MAX_BODY_BYTES, SECURITY_HEADERS, TOKEN_HEADER, AnnotateError,
                                       MaskEncodingError, create_app, decode_mask, encode_mask, page_url, serve)
from pyro_ebnn.annotate.session import page_state_path, page_token, start_command


@pytest.fixture
def task():
    return FakeTask("grey")


@pytest.fixture
def store(tmp_path, task):
    return fake_store(tmp_path / "feedback.sqlite", task)


@pytest.fixture
def client(task, store):
    return create_app(task, store, next_command="pyro-ebnn finetune --masks feedback.npz").test_client()


def _decoy_mask(task, index):
    mask = np.zeros((task.size, task.size), bool)
    top, left = task.decoy_box(index)
    mask[top:top + task.decoy, left:left + task.decoy] = True
    return mask


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (28, 28), (13, 17), (64, 64)])
def test_masks_survive_the_wire_encoding(shape):
    mask = np.random.default_rng(sum(shape)).random(shape) < 0.5
    encoded = encode_mask(mask)
    assert encoded["shape"] == list(shape) and len(base64.b64decode(encoded["bits"])) == -(-mask.size // 8)
    assert np.array_equal(decode_mask(encoded), mask)


@pytest.mark.parametrize("value, message", [
    ({"shape": [3, 5], "bits": base64.b64encode(bytes([0, 0b00000001])).decode()}, "padding bits"),
    ({"shape": [3, 5], "bits": base64.b64encode(bytes(3)).decode()}, "packs into 2 bytes, got 3"),
    ({"shape": [3, 5], "bits": "not base64!"}, "not valid base64"),
    ({"shape": [3, -5], "bits": ""}, "positive integers"),
    ({"shape": [3, 5]}, "must be"),
    ([[0, 1], [1]], "equal length"),
    ([["0", "1"]], "rows of numbers"),
    ("0101", "must be"),
])
def test_malformed_mask_encodings_are_refused(value, message):
    with pytest.raises(MaskEncodingError, match=message):
        decode_mask(value)


def test_the_items_list_order_and_progress(client):
    body = client.get("/api/items").get_json()
    assert [item["index"] for item in body["items"]] == [7, 2, 11]
    assert all(item["decision"] is None for item in body["items"])
    assert body["progress"] == {"answered": 0, "total": 3, "counts": {"irrelevant": 0, "accepted": 0, "skipped": 0}}
    assert body["class_names"] == [str(d) for d in range(10)] and body["annotator"] == "alice"
    assert body["next_command"] == "pyro-ebnn finetune --masks feedback.npz"


def test_an_item_carries_prediction_regions_and_neighbours(client, task):
    body = client.get("/api/items/2").get_json()
    assert (body["index"], body["position"], body["previous"], body["next"]) == (2, 1, 7, 11)
    assert (body["height"], body["width"], body["channels"]) == (28, 28, 1)
    expected = task.prediction(2)
    prediction = body["prediction"]
    assert prediction["probs"] == pytest.approx(expected["probs"]) and prediction["label"] == 2
    assert prediction["top"][0]["class"] == expected["predicted"] == prediction["predicted"]
    assert [t["prob"] for t in prediction["top"]] == sorted(expected["probs"], reverse=True)[:5]
    segments, candidates = task.regions(2)
    assert body["segments"] == segments.ravel().tolist() and body["candidates"] == sorted(candidates)
    assert body["heatmap"]["signed"] and body["heatmap"]["low"] == -body["heatmap"]["high"]
    assert body["answer"] is None
    unlabelled = client.get("/api/items/11").get_json()
    assert unlabelled["prediction"]["label"] is None and unlabelled["next"] is None


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_the_image_and_heat_map_pngs(tmp_path, kind):
    task = FakeTask(kind)
    client = create_app(task, fake_store(tmp_path / "s.sqlite", task)).test_client()
    image = imread(io.BytesIO(client.get("/api/items/7/image.png").data))
    assert image.shape[:2] == (task.size, task.size)
    assert np.allclose(image[..., :task.channels], task.image(7), atol=0.5 / 255 + 1e-6)
    heat = imread(io.BytesIO(client.get("/api/items/7/heatmap.png").data))
    assert heat.shape == (task.size, task.size, 4)
    top, left = task.decoy_box(7)
    red, green, blue, alpha = heat[top + task.decoy // 2, left + task.decoy // 2]
    assert alpha > 0.9 and red > 2 * blue  # strongest and positive (red) at the decoy
    red, green, blue, alpha = heat[task.size // 2, task.size // 2]
    assert 0.2 < alpha < 0.6 and blue > red + 0.2  # weaker and negative (blue) on the object


def test_the_task_is_asked_once_per_image(client, task):
    for _ in range(3):
        for path in ("/api/items/7", "/api/items/7/image.png", "/api/items/7/heatmap.png"):
            assert client.get(path).status_code == 200
    assert task.calls == {"image": 1, "heatmap": 1, "prediction": 1, "regions": 1}


def test_answers_are_recorded_and_read_back(client, store, task):
    mask = _decoy_mask(task, 7)
    reply = client.post("/api/items/7/answer", json={"decision": "irrelevant", "mask": encode_mask(mask)}).get_json()
    assert np.array_equal(store.answer(7).mask, mask)
    assert reply["answer"]["decision"] == "irrelevant" and reply["next_unanswered"] == 2
    assert np.array_equal(decode_mask(client.get("/api/items/7").get_json()["answer"]["mask"]), mask)
    reply = client.post("/api/items/11/answer", json={"decision": "irrelevant", "mask": mask.astype(int).tolist()})
    assert reply.get_json()["next_unanswered"] == 2  # wraps around to the first unanswered
    reply = client.post("/api/items/2/answer", json={"decision": "accepted", "mask": None}).get_json()
    assert reply["next_unanswered"] is None
    assert reply["progress"] == {"answered": 3, "total": 3, "counts": {"irrelevant": 2, "accepted": 1, "skipped": 0}}
    client.post("/api/items/2/answer", json={"decision": "skipped"})
    listed = client.get("/api/items").get_json()["items"]
    assert [item["decision"] for item in listed] == ["irrelevant", "skipped", "irrelevant"]
    assert [a.decision for a in store.history(2)] == ["accepted", "skipped"]


_GOOD_MASK = encode_mask(np.eye(28, dtype=bool))


@pytest.mark.parametrize("path, kwargs, status, message", [
    ("/api/items/99/answer", {"json": {"decision": "accepted"}}, 404, "no image 99"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant", "mask": encode_mask(np.eye(27, dtype=bool))}},
     400, "image's size 28 x 28"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant", "mask": np.eye(28, 27).tolist()}}, 400, "image's size"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant", "mask": (2 * np.eye(28)).tolist()}},
     400, "must be binary"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant", "mask": (0.5 * np.ones((28, 28))).tolist()}},
     400, "must be binary"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant", "mask": encode_mask(np.zeros((28, 28)))}},
     400, "marks no pixel"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant"}}, 400, "needs a mask"),
    ("/api/items/7/answer", {"json": {"decision": "accepted", "mask": _GOOD_MASK}}, 400, "takes no mask"),
    ("/api/items/7/answer", {"json": {"decision": "relevant"}}, 400, "unknown decision 'relevant'"),
    ("/api/items/7/answer", {"json": {}}, 400, "unknown decision None"),
    ("/api/items/7/answer", {"json": {"decision": "accepted", "note": "x"}}, 400, "unknown field 'note'"),
    ("/api/items/7/answer", {"json": ["accepted"]}, 400, "JSON object"),
    ("/api/items/7/answer", {"data": '{"decision": "accepted"', "content_type": "application/json"},
     400, "not valid JSON"),
    ("/api/items/7/answer", {"data": "decision=accepted", "content_type": "application/x-www-form-urlencoded"},
     415, "Content-Type: application/json"),
    ("/api/items/7/answer", {"json": {"decision": "irrelevant", "mask": {"shape": [28, 28], "bits": "%%%"}}},
     400, "not valid base64"),
    ("/api/items/7/answer", {"data": b'{"decision": "irrelevant", "mask": "' + b"A" * MAX_BODY_BYTES + b'"}',
                             "content_type": "application/json"}, 413, "larger than"),
    ("/api/items/7/answer", {"data": b'{"mask": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                             "content_type": "application/json"}, 400, "nested too deeply"),
    ("/api/items/7/answer", {"input_stream": io.BytesIO(b'{"decision": "accepted", "mask": "' + b"A" * MAX_BODY_BYTES
                                                        + b'"}'),
                             "content_type": "application/json", "headers": {"Transfer-Encoding": "chunked"},
                             "environ_overrides": {"wsgi.input_terminated": True}}, 413, "larger than"),
])
def test_bad_answers_get_a_clear_4xx_and_change_nothing(client, store, path, kwargs, status, message):
    response = client.post(path, **kwargs)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert message in error and "\n" not in error
    assert store.history() == []


@pytest.mark.parametrize("path", ["/api/items/99", "/api/items/99/image.png", "/api/items/99/heatmap.png",
                                  "/api/items/-1", "/api/nothing"])
def test_unknown_images_and_routes_are_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404 and response.get_json()["error"]


def test_a_wrong_method_is_405_json(client, store):
    response = client.get("/api/items/7/answer")
    assert response.status_code == 405 and "Method Not Allowed" in response.get_json()["error"]
    assert client.put("/api/items/7/answer", json={"decision": "accepted"}).status_code == 405
    assert store.history() == []


@pytest.mark.parametrize("path", ["/", "/api/items", "/api/items/7", "/api/items/7/image.png",
                                  "/static/annotate.js", "/static/annotate.css"])
def test_with_a_token_every_request_must_carry_it(task, store, path):
    client = create_app(task, store, token="s3cret/+").test_client()
    assert client.get(path).status_code == 401
    assert client.get(path, query_string={"token": "guess"}).status_code == 403
    assert client.get(path, headers={TOKEN_HEADER: "guess"}).status_code == 403
    assert client.get(path, query_string={"token": "s3cret/+"}).status_code == 200
    assert client.get(path, headers={TOKEN_HEADER: "s3cret/+"}).status_code == 200


@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/api/items"), ("GET", "/api/items/7/image.png"),
                                          ("GET", "/static/annotate.js"), ("GET", "/api/items/99"),
                                          ("POST", "/api/items/7/answer"), ("GET", "/favicon.ico")])
def test_every_response_carries_the_security_headers(task, store, method, path):
    client = create_app(task, store, token="s3cret").test_client()
    for headers in ({}, {TOKEN_HEADER: "s3cret"}):                # refused and served alike
        response = client.open(path, method=method, headers=headers, json={"decision": "nothing"})
        assert {key: response.headers.get(key) for key in SECURITY_HEADERS} == SECURITY_HEADERS
    assert "default-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert client.get("/favicon.ico").status_code == 204            # asked for without the token: no error


def test_the_page_has_no_inline_script_or_style(task, store):
    html = create_app(task, store).test_client().get("/").get_data(as_text=True)
    scripts = html.count("<script")
    assert scripts == html.count('<script src="/static/') == 3 and '<script src="/static/annotate.js' in html
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html


def test_the_token_is_kept_beside_the_store(tmp_path):
    path = tmp_path / "feedback.sqlite"
    token = page_token(path)
    assert len(token) >= 20 and page_token(path) == token           # the same after a restart
    saved = page_state_path(path)
    assert saved == tmp_path / "feedback.sqlite.page.json" and os.stat(saved).st_mode & 0o077 == 0
    assert page_token(path, "given") == "given" and page_token(path) == token   # a given token wins, unsaved
    assert page_token(tmp_path / "other.sqlite") != token
    saved.write_text("{not json")
    with pytest.raises(AnnotateError, match="delete the file") as err:
        page_token(path)
    assert "\n" not in str(err.value)


def test_the_items_name_the_command_that_starts_the_page_again(task, store):
    command = start_command("runs/a b", "fb.sqlite", 50, "bald", seed=1, port=9000)
    assert command == "python -m pyro_ebnn.run annotate --run 'runs/a b' --store fb.sqlite --budget 50 --select bald " \
                      "--seed 1 --port 9000"
    body = create_app(task, store, start_command=command).test_client().get("/api/items").get_json()
    assert body["start_command"] == command


def test_serving_beyond_loopback_says_the_page_is_plain_http(task, store, monkeypatch, capsys):
    from werkzeug.serving import BaseWSGIServer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(BaseWSGIServer, "serve_forever", interrupted)
    serve(task, store, host="0.0.0.0", port=0, token="s3cret")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "plain HTTP, unencrypted: the token and the answers travel in clear" in lines[1]
    serve(task, store, host="127.0.0.1", port=0)
    assert "plain HTTP" not in capsys.readouterr().out


def test_with_a_token_answers_without_it_are_refused(task, store):
    client = create_app(task, store, token="s3cret").test_client()
    assert client.post("/api/items/7/answer", json={"decision": "accepted"}).status_code == 401
    assert client.post("/api/items/7/answer?token=nope", json={"decision": "accepted"}).status_code == 403
    assert store.history() == []
    assert client.post("/api/items/7/answer", json={"decision": "accepted"},
                       headers={TOKEN_HEADER: "s3cret"}).status_code == 200


def test_an_empty_token_is_refused(task, store):
    with pytest.raises(AnnotateError, match="the token is empty"):
        create_app(task, store, token="")


def test_the_page_links_its_assets_with_the_token(task, store):
    html = create_app(task, store, token="s3cret").test_client().get("/?token=s3cret").get_data(as_text=True)
    assert "/static/annotate.js?token=s3cret" in html and "/static/annotate.css?token=s3cret" in html
    assert "http://" not in html and "https://" not in html  # nothing from the internet


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "annotate.example.org"])
def test_serving_beyond_loopback_needs_a_token(task, store, host, capsys):
    with pytest.raises(AnnotateError, match="pass a token") as err:
        serve(task, store, host=host, port=0)
    assert "\n" not in str(err.value) and capsys.readouterr().out == ""


def test_serving_on_a_busy_port_is_one_clear_error(task, store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(AnnotateError, match="choose another port"):
            serve(task, store, host="127.0.0.1", port=taken.getsockname()[1])


def test_the_printed_address_carries_the_token():
    assert page_url("127.0.0.1", 8765) == "http://127.0.0.1:8765/"
    assert page_url("127.0.0.1", 8765, "a/b+c") == "http://127.0.0.1:8765/?token=a%2Fb%2Bc"
    assert page_url("::1", 80) == "http://[::1]:80/"
    assert page_url("0.0.0.0", 80, "t").endswith(":80/?token=t") and "0.0.0.0" not in page_url("0.0.0.0", 80)


def test_a_store_for_other_images_is_refused(tmp_path, task):
    task_rgb = FakeTask("rgb")
    with pytest.raises(AnnotateError, match="images are 64 x 64 but the store holds masks of 28 x 28"):
        create_app(task_rgb, fake_store(tmp_path / "s.sqlite", task))


# -- reading the explanation: percentile clipping, the colour scale, the per-class maps --------------
class OutlierTask(FakeTask):
    """The fake task with a smooth positive (or signed) heat map and one huge outlier pixel, and
    per-class mean maps: class k lights up column k, class 2 has no image."""

    def __init__(self, signed=False):
        super().__init__("grey")
        self.signed = signed

    def _heat(self, index):
        y, x = np.mgrid[:self.size, :self.size]
        heat = (x + y + 1.0) / (2 * self.size)
        if self.signed:
            heat = heat - heat.mean()
        heat[5, 5] = 1e6
        return heat

    def class_heatmaps(self):
        maps = np.zeros((len(self.class_names), self.size, self.size))
        for k in range(len(self.class_names)):
            maps[k, :, k] = 1.0
        counts = np.arange(len(self.class_names)) + 1
        maps[2], counts[2] = 0.0, 0
        return maps, counts


def _png(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "image/png", response.get_data(as_text=True)
    return imread(io.BytesIO(response.data))


@pytest.mark.parametrize("signed", [False, True])
def test_one_outlier_does_not_leave_the_rest_of_the_heat_map_dark(tmp_path, signed):
    task = OutlierTask(signed)
    client = create_app(task, fake_store(tmp_path / "s.sqlite", task)).test_client()
    heat, rgba = task._heat(7), _png(client, "/api/items/7/heatmap.png")
    strength = np.abs(heat) / np.percentile(np.abs(heat[heat != 0]), 99)
    alpha = rgba[..., 3]
    assert alpha[5, 5] == 1.0                                        # the outlier: clipped to the top
    assert (alpha[strength >= 0.99] > 0.98).all()                    # the 99th percentile: full strength
    assert np.mean(alpha > 0.3) > 0.5                                # most of the map is visible
    assert np.allclose(alpha, np.clip(strength, 0, 1), atol=0.02) if signed else alpha.max() == 1.0
    top = np.unravel_index(np.argmax(np.where(heat < 1e6, heat, -np.inf)), heat.shape)   # above the 99th
    expected = colormaps["RdBu_r" if signed else "inferno"](1.0)[:3]
    assert np.allclose(rgba[top][:3], expected, atol=0.05)          # the end of the colour map is used
    item = client.get("/api/items/7").get_json()["heatmap"]
    assert item["signed"] is signed and item["high"] < 2                # not the outlier's 1e6


@pytest.mark.parametrize("signed", [0, 1])
def test_the_colour_scale_runs_from_low_to_high(client, signed):
    scale = _png(client, f"/api/heatmap-scale.png?signed={signed}")
    assert scale.shape == (1, 256, 4)
    assert scale[0, 0, 3] == (1.0 if signed else 0.0) and scale[0, -1, 3] == 1.0
    if signed:
        assert scale[0, 128, 3] < 0.01 and scale[0, 0, 2] > scale[0, 0, 0] and scale[0, -1, 0] > scale[0, -1, 2]
    else:
        assert np.allclose(scale[0, -1, :3], colormaps["inferno"](1.0)[:3], atol=0.01)
        assert (np.diff(scale[0, :, 3]) >= 0).all()


def test_the_mean_explanation_of_every_predicted_class_is_one_png(tmp_path):
    task = OutlierTask()
    client = create_app(task, fake_store(tmp_path / "s.sqlite", task)).test_client()
    classes = client.get("/api/classes").get_json()["classes"]
    assert [c["name"] for c in classes] == task.class_names
    assert [c["images"] for c in classes] == [0 if k == 2 else k + 1 for k in range(len(task.class_names))]
    for k in range(len(task.class_names)):
        rgba = _png(client, f"/api/classes/{k}/heatmap.png")
        assert rgba.shape == (task.size, task.size, 4)
        lit = rgba[..., 3] > 0.5
        assert (lit[:, k].all() and lit.sum() == task.size) if k != 2 else not lit.any()
    assert client.get(f"/api/classes/{len(classes)}/heatmap.png").status_code == 404
    page = client.get("/").get_data(as_text=True)
    assert 'id="class-maps"' in page and 'id="side-heat"' in page and "/static/explain.js" in page


def test_a_task_without_per_class_maps_says_so_in_one_line(client):
    for path in ("/api/classes", "/api/classes/0/heatmap.png"):
        response = client.get(path)
        assert response.status_code == 404 and "class_heatmaps" in response.get_json()["error"]
        assert "\n" not in response.get_json()["error"]
