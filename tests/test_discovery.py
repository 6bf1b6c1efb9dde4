"""Finding the shortcut across the dataset: the group whose explanations rest on a planted square is
found and ranked first; marking it once stores one answer and a propagated mask per member with
provenance, undone in one action; a region marked on one image is found again at another place
(by evidence-layer features and by pixels); the group annotator spends one action per group, and the
finder's one mark finds a moving square in every image at its own place; the shortcut selection strategy picks the images that rest on the square."""
import numpy as np
import pytest
import torch

from discovery_fixtures import SIZE, SQUARE, PlantedPool, tiny_net
from pyro_ebnn.annotate.discovery import (DiscoveryError, cell_centres, cluster, discover, downsample,
                                          evidence_features, propagate_features, propagate_pixels)
from pyro_ebnn.annotate.oracle import GROUP_RULES, answer_groups
from pyro_ebnn.annotate.selection import select
from pyro_ebnn.data.store import FeedbackStore


@pytest.fixture
def pool():
    return PlantedPool()


@pytest.fixture
def store(tmp_path):
    return FeedbackStore(tmp_path / "feedback.sqlite", "planted", (SIZE, SIZE), "alice")


def _square():
    mask = np.zeros((SIZE, SIZE), bool)
    mask[SQUARE] = True
    return mask


def test_the_group_with_the_square_is_found_and_ranked_first(pool):
    groups = pool.discovery().groups()
    squares = {cls: {i for i in pool.indices if i % 2 == cls and pool.has_square(i)} for cls in (0, 1)}
    assert len(groups) == 4                                      # per class: the square and the object
    for best in groups[:2]:
        assert set(best.members) == squares[best.cls]
        assert best.concentration > 0.5 and best.consistency > 0.9 and best.top_region[SQUARE].all()
    assert {g.cls for g in groups[:2]} == {0, 1}
    assert min(g.score for g in groups[:2]) > 2 * max(g.score for g in groups[2:])
    assert groups[0].representative == groups[0].members[0] and len(groups[0].shown()) == 12


def test_the_number_of_groups_follows_the_eigengap_and_is_capped(pool):
    rng = np.random.default_rng(0)
    maps = rng.random((60, 8, 8))
    for k in range(3):                                           # three well-separated patterns
        maps[k * 20:(k + 1) * 20, k * 2, k * 2] += 50
    labels = cluster(downsample(maps))
    assert len(set(labels)) == 3 and all(len(set(labels[k * 20:(k + 1) * 20])) == 1 for k in range(3))
    assert len(set(cluster(downsample(maps), max_groups=2))) <= 2
    assert len(set(cluster(downsample(maps[:8])))) == 1         # too few images: one group
    with pytest.raises(DiscoveryError, match="non-negative"):
        discover(-maps, np.zeros(60))
    with pytest.raises(DiscoveryError, match="one entry per image"):
        discover(maps, np.zeros(59))


def test_marking_a_group_stores_one_answer_and_a_mask_per_member_and_undo_removes_them(pool, store):
    discovery = pool.discovery()
    group = discovery.groups()[0]
    answer, masks = store.record_propagated((group.representative, _square()),
                                            discovery.propagate(group, _square(), "place"))
    assert len(store.history()) == 1 and answer.index == group.representative
    assert sorted(m.index for m in masks) == sorted(group.members)
    assert all(m.rule == "place" and m.answer == answer.row and m.detail == {"group": group.key, "source": None}
               for m in masks)
    assert min(m.score for m in masks) > 0.5                     # the members' maps rest on the square
    assert sorted(store.combined()) == sorted(group.members)
    assert store.undo(answer.row) == len(group.members)
    assert store.combined() == {} and store.propagated() == [] and store.answered() == set()


def test_a_patch_marked_on_one_image_is_found_at_another_place_by_features_and_by_pixels():
    rng = np.random.default_rng(1)
    patch = np.where(np.add.outer(np.arange(6), np.arange(6)) % 2 == 0, 1.0, 0.2)
    images = np.zeros((6, SIZE, SIZE))
    images += 0.05 * rng.random(images.shape)
    images[0, 3:9, 3:9] = patch                                  # marked here
    images[1, 17:23, 15:21] = patch                              # found here, elsewhere
    marked = np.zeros((SIZE, SIZE), bool)
    marked[3:9, 3:9] = True
    at = np.zeros((SIZE, SIZE), bool)
    at[17:23, 15:21] = True
    net = tiny_net()
    features = evidence_features(net, torch.as_tensor(images[:, None], dtype=torch.float32))
    centres = cell_centres(net, (1, SIZE, SIZE))
    assert [b for _, b in centres] == [2, 2]                     # conv, pool 2, conv: cells 2 px apart
    found = {i: (m, s) for i, m, _, s, _ in propagate_features(marked, features[0], features, range(6), centres)}
    assert set(found) == {0, 1}                                  # the patch's images, no other
    mask, score = found[1]
    assert score > 0.95 and (mask & at).sum() / mask.sum() > 0.8 and (mask & at).sum() / at.sum() > 0.8
    found = {i: m for i, m, *_ in propagate_pixels(marked, images[0], images, range(6))}
    assert set(found) == {0, 1} and np.array_equal(found[1], at)
    with pytest.raises(DiscoveryError, match="one flat colour"):
        propagate_pixels(np.ones((SIZE, SIZE), bool), np.zeros((SIZE, SIZE)), images, range(6))


def test_find_everywhere_from_a_group_reaches_the_squares_of_every_class(pool):
    discovery = pool.discovery()
    group = discovery.groups()[0]
    found = {i for i, *_ in discovery.propagate(group, _square(), "pixels")}
    assert found == {i for i in pool.indices if pool.has_square(i)}
    with pytest.raises(DiscoveryError, match="not a member"):
        discovery.propagate(group, _square(), "pixels", source=discovery.groups()[2].members[0])
    with pytest.raises(DiscoveryError, match="unknown propagation rule"):
        discovery.propagate(group, _square(), "everywhere")
    with pytest.raises(DiscoveryError, match="no evidence-layer features"):
        pool.discovery(with_features=False).propagate(group, _square(), "features")


def test_the_group_annotator_spends_one_action_per_group(pool, store):
    discovery = pool.discovery()
    spent = answer_groups(discovery, store, pool.true_mask, actions=3)
    assert spent["actions"] == spent["groups"] == 3
    assert spent["marked"] == 2                                  # the third group's members agree on nothing
    assert len(store.history()) == 2                             # one answer per group marked
    squares = {i for i in pool.indices if pool.has_square(i)}
    assert set(store.combined()) == squares and spent["images"] == len(squares)
    assert all(np.array_equal(a.mask, _square()) for a in store.combined().values())


def test_the_finder_marks_a_moving_square_once_and_finds_it_at_its_place_everywhere(tmp_path):
    pool = PlantedPool(moving=True)
    squares = {i for i in pool.indices if pool.has_square(i)}
    assert len({str(pool.square(i)) for i in squares}) == 4
    marked = {}
    for annotator, rule in GROUP_RULES.items():
        with FeedbackStore(tmp_path / f"{annotator}.sqlite", "planted", (SIZE, SIZE), "alice") as store:
            spent = answer_groups(pool.discovery(), store, pool.true_mask, actions=1, rule=rule)
            assert spent["actions"] == 1 and len(store.history()) == spent["marked"]
            marked[annotator] = store.combined()
    assert set(marked["finder"]) == squares                      # every square, whatever its corner
    assert all(np.array_equal(a.mask, pool.true_mask(i)) for i, a in marked["finder"].items())
    assert set(marked["groups"]) < squares                      # by place: where the group's members agree


def test_the_shortcut_strategy_picks_the_images_that_rest_on_the_square(pool):
    discovery = pool.discovery()
    chosen = select("shortcut", (discovery.maps, discovery.predicted), budget=12)
    assert all(pool.has_square(int(discovery.indices[p])) for p in chosen)


def test_find_everywhere_finds_each_piece_of_a_mark_on_its_own():
    """Four corner squares marked at once (Decoy MNIST's corners rule) are found in an image whose
    squares have another shade and whose digit differs: each square is its own template (the whole
    mark's bounding box is the whole image, which matches near-copies only)."""
    rng = np.random.default_rng(0)
    images = np.zeros((3, 28, 28))
    corners = [(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(24, 28)), (slice(24, 28), slice(0, 4)),
               (slice(24, 28), slice(24, 28))]
    for n, shade in enumerate((0.9, 0.4, 0.0)):
        rows = np.arange(8, 20)
        images[n, rows, rows + 2 * n - 4] = rng.uniform(0.5, 1, 12)   # a different "digit" stroke
        for rows, cols in corners:
            images[n, rows, cols] = shade
    marked = np.zeros((28, 28), bool)
    for rows, cols in corners:
        marked[rows, cols] = True
    found = {i: m for i, m, *_ in propagate_pixels(marked, images[0], images, range(3))}
    assert set(found) == {0, 1}                                  # image 2 has no squares
    assert np.array_equal(found[1], marked)


def test_find_everywhere_matches_a_coloured_patch_by_itself_whatever_surrounds_it():
    """A flat magenta patch on textured backgrounds ([001]'s ISIC patches, the photo task): its own
    pixels are the template, so a different background around it does not hide it (with a border of
    the source's surroundings, as for a flat grey square, the correlation falls below the threshold).
    A one-pixel speck marked by accident is not searched for: alone it matches any similar pixel."""
    rng = np.random.default_rng(2)
    images = rng.random((4, 24, 24, 3))                          # textured backgrounds, all different
    for n, (r, c) in enumerate([(2, 2), (12, 9), (0, 14)]):
        images[n, r:r + 6, c:c + 6] = (1.0, 0.0, 1.0)
    marked = np.zeros((24, 24), bool)
    marked[2:8, 2:8] = True
    marked[20, 20] = True                                        # a stray speck of the brush, not searched for
    found = {i: m for i, m, *_ in propagate_pixels(marked, images[0], images, range(4))}
    assert set(found) == {0, 1, 2}                               # image 3 has no patch
    at = np.zeros((24, 24), bool)
    at[12:18, 9:15] = True
    assert np.array_equal(found[1], at)
