"""The discovery view's JSON API: the groups best first, a group's mean map and images, marking a
group once (one answer, a propagated mask per member, with provenance), finding a region again in
the whole pool, the list of propagated masks, undoing an answer with everything propagated from
it, and the 4xx refusals that write nothing."""
import io

import numpy as np
import pytest
from matplotlib.image import imread

from annotate_fixtures import FakeTask, fake_store
from discovery_fixtures import SIZE, SQUARE, PlantedPool
from pyro_ebnn.annotate.server import create_app, decode_mask, encode_mask
from pyro_ebnn.data.store import FeedbackStore


@pytest.fixture
def pool():
    return PlantedPool()


@pytest.fixture
def store(tmp_path):
    return fake_store(tmp_path / "feedback.sqlite", FakeTask("grey"))


@pytest.fixture
def client(pool, store):
    return create_app(FakeTask("grey"), store, token="secret", discovery=pool.discovery()).test_client()


def _get(client, path):
    return client.get(path, headers={"X-Annotate-Token": "secret"})


def _post(client, path, body=None):
    return client.post(path, json=body, headers={"X-Annotate-Token": "secret"})


def _square():
    mask = np.zeros((SIZE, SIZE), bool)
    mask[SQUARE] = True
    return mask


def test_the_groups_are_listed_best_first_and_the_page_links_to_them(client, pool):
    body = _get(client, "/api/groups").get_json()
    groups = body["groups"]
    assert len(groups) == 4 and [g["score"] for g in groups] == sorted((g["score"] for g in groups), reverse=True)
    assert groups[0]["class_name"] in ("cat", "dog") and groups[0]["answers"] == []
    assert body["rules"] == ["place", "pixels", "features"] and body["features"] is True
    assert "Shortcuts across the dataset" in _get(client, "/?token=secret").get_data(as_text=True)
    page = _get(client, "/groups?token=secret").get_data(as_text=True)
    assert "groups.js" in page and "token=secret" in page
    assert client.get("/api/groups").status_code == 401 and client.get("/api/groups?token=wrong").status_code == 403


def test_a_group_shows_its_mean_map_proposals_and_most_typical_images(client, pool):
    key = _get(client, "/api/groups").get_json()["groups"][0]["key"]
    body = _get(client, f"/api/groups/{key}").get_json()
    assert (body["height"], body["width"]) == (SIZE, SIZE) and len(body["segments"]) == SIZE * SIZE
    assert all(pool.has_square(i) for i in body["members"]) and len(body["shown"]) == 12
    segments = np.array(body["segments"]).reshape(SIZE, SIZE)
    assert segments[3, 3] == body["candidates"][0]                 # the first proposal is the square
    heat = imread(io.BytesIO(_get(client, f"/api/groups/{key}/heatmap.png").data))
    assert heat.shape == (SIZE, SIZE, 4) and heat[3, 3, 3] > 0.9 > heat[20, 20, 3]
    image = imread(io.BytesIO(_get(client, f"/api/groups/{key}/image.png").data))
    assert image.shape[:2] == (SIZE, SIZE) and image[3, 3, 0] > 0.8
    member = body["shown"][0]
    assert _get(client, f"/api/pool/{member}/image.png").status_code == 200
    assert len(_get(client, f"/api/pool/{member}").get_json()["segments"]) == SIZE * SIZE
    assert _get(client, "/api/pool/5/image.png").status_code == 404
    assert _get(client, "/api/groups/c9g9").status_code == 404


def test_marking_a_group_once_stores_one_answer_and_a_propagated_mask_per_member(client, store, pool):
    key = _get(client, "/api/groups").get_json()["groups"][0]["key"]
    group = _get(client, f"/api/groups/{key}").get_json()
    reply = _post(client, f"/api/groups/{key}/answer", {"mask": encode_mask(_square()), "rule": "place"})
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["count"] == group["size"] and body["answer"]["index"] == group["representative"]
    assert len(store.history()) == 1
    propagated = store.propagated(body["answer"]["row"])
    assert sorted(p.index for p in propagated) == sorted(group["members"])
    assert all(p.rule == "place" and p.detail["group"] == key and np.array_equal(p.mask, _square()) for p in propagated)
    listed = _get(client, f"/api/answers/{body['answer']['row']}/propagated?limit=100").get_json()
    assert listed["count"] == group["size"] and np.array_equal(decode_mask(listed["propagated"][0]["mask"]), _square())
    again = _get(client, "/api/groups").get_json()["groups"][0]
    assert again["answers"] == [{"answer": body["answer"]["row"], "rule": "place", "source": None,
                                 "propagated": group["size"]}]
    assert sorted(store.combined()) == sorted(group["members"])   # what finetune --feedback reads


def test_undo_removes_the_answer_and_everything_propagated_from_it(client, store):
    key = _get(client, "/api/groups").get_json()["groups"][0]["key"]
    row = _post(client, f"/api/groups/{key}/answer", {"mask": encode_mask(_square())}).get_json()["answer"]["row"]
    reply = _post(client, f"/api/answers/{row}/undo")
    assert reply.status_code == 200 and reply.get_json()["propagated"] == 12
    assert store.combined() == {} and store.propagated() == [] and len(store.history()) == 1   # nothing deleted
    assert _get(client, "/api/groups").get_json()["groups"][0]["answers"] == []
    assert _get(client, f"/api/answers/{row}/propagated").get_json()["undone"] is True
    assert _post(client, f"/api/answers/{row}/undo").status_code == 409
    assert _post(client, "/api/answers/999/undo").status_code == 404


def test_find_everywhere_from_one_image_reaches_the_squares_of_every_class(client, store, pool):
    key = _get(client, "/api/groups").get_json()["groups"][0]["key"]
    member = _get(client, f"/api/groups/{key}").get_json()["members"][3]
    for rule in ("pixels", "features"):
        body = _post(client, f"/api/groups/{key}/answer",
                     {"mask": encode_mask(_square()), "rule": rule, "source": member}).get_json()
        assert body["answer"]["index"] == member
        found = {p.index for p in store.propagated(body["answer"]["row"])}
        assert found == {i for i in pool.indices if pool.has_square(i)}, rule


@pytest.mark.parametrize("body, status, message", [
    ({"mask": None}, 400, "needs a mask"),
    ({"mask": np.zeros((SIZE, SIZE), int).tolist()}, 400, "marks no pixel"),
    ({"mask": np.ones((3, 3), int).tolist()}, 400, "image's size"),
    ({"mask": encode_mask(_square()), "rule": "anywhere"}, 400, "unknown rule"),
    ({"mask": encode_mask(_square()), "source": "7"}, 400, "source must be null"),
    ({"mask": encode_mask(_square()), "source": 5}, 400, "not a member"),
    ({"mask": encode_mask(_square()), "colour": "red"}, 400, "unknown field 'colour'"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_group_answers_are_refused_and_write_nothing(client, store, body, status, message):
    key = _get(client, "/api/groups").get_json()["groups"][0]["key"]
    reply = _post(client, f"/api/groups/{key}/answer", body)
    assert reply.status_code == status and message in reply.get_json()["error"]
    assert store.history() == [] and store.propagated(include_undone=True) == []


def test_another_annotator_cannot_undo_an_answer(client, store, tmp_path, pool):
    key = _get(client, "/api/groups").get_json()["groups"][0]["key"]
    row = _post(client, f"/api/groups/{key}/answer", {"mask": encode_mask(_square())}).get_json()["answer"]["row"]
    bob = FeedbackStore(store.path, store.fingerprint, store.image_shape, "bob")
    other = create_app(FakeTask("grey"), bob, token="secret", discovery=pool.discovery()).test_client()
    assert _post(other, f"/api/answers/{row}/undo").status_code == 403
    assert len(store.propagated()) == 12
