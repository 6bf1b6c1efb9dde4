"""Candidate regions ([002] §4.2) on planted attributions, the Captum maps against a hand computation
on a tiny CNN, and the region measures by hand."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from skimage.segmentation import slic
from torch import nn

from pyro_ebnn.explain.regions import (DEFAULT_PROPOSALS, KEEP_MASS, MAX_BLOBS, PROPOSALS, RegionError,
                                        attribution_maps, blob_regions, blobs, candidate_regions, fine_segments,
                                        grow_to_superpixels, mass_threshold, proposal_regions, region_coverage,
                                        region_iou)
from pyro_ebnn.errors import EBNNError


def square_mask(shape, top, left, side):
    m = np.zeros(shape, dtype=bool)
    m[top:top + side, left:left + side] = True
    return m


def bump(shape, center, width):
    """A Gaussian bump on a grid of ``shape`` (row, column centre and width in cells)."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((rows - center[0]) ** 2 + (cols - center[1]) ** 2) / (2 * width ** 2))


def planted(channels, height, width, top, left, side, seed=0):
    """An image with a coloured square on a smooth background; Grad-CAM (at a quarter of the image
    size, like a last convolution) is a bump on the square plus small negative values; the saliency
    is positive inside the square and small noise elsewhere."""
    rng = np.random.default_rng(seed)
    ramp = 0.3 + 0.2 * np.linspace(0, 1, width) + 0.02 * rng.standard_normal((1, height, width))
    image = np.clip(ramp, 0, 1).repeat(channels, 0)
    image[:, top:top + side, left:left + side] = (0.8 + 0.2 * rng.random(channels))[:, None, None]
    saliency = 0.05 * rng.standard_normal((channels, height, width))
    saliency[:, top:top + side, left:left + side] = rng.uniform(0.5, 1.0, (channels, side, side))
    h, w = max(3, height // 4), max(3, width // 4)
    center = ((top + side / 2) * h / height - 0.5, (left + side / 2) * w / width - 0.5)
    gradcam = bump((h, w), center, side / 2 * h / height) - 0.1 * rng.random((h, w))
    return image, gradcam, saliency, square_mask((height, width), top, left, side)


# -- the planted square --------------------------------------------------------------------------
@pytest.mark.parametrize("channels, height, width, top, left, side, keep_mass", [
    (1, 28, 28, 20, 10, 6, 0.5),
    (1, 33, 29, 5, 20, 6, 0.5),
    (3, 64, 48, 20, 10, 12, KEEP_MASS),
    (5, 64, 48, 30, 30, 10, KEEP_MASS),
    (3, 224, 224, 50, 100, 40, KEEP_MASS),
])
def test_the_candidate_region_is_the_planted_square(channels, height, width, top, left, side, keep_mass):
    for seed in range(3):
        image, gradcam, saliency, square = planted(channels, height, width, top, left, side, seed)
        regions = candidate_regions(image, gradcam, saliency, keep_mass=keep_mass)
        mask = regions.mask()
        assert mask.shape == (height, width) and mask.dtype == bool
        assert regions.segments.shape == (height, width)
        assert region_coverage(mask, square) == 1.0
        assert region_iou(mask, square) >= 0.9                    # little else
        assert (regions.combined[~square] == 0).all()             # W lies in the square


def test_without_thresholding_the_noise_spreads_the_region():
    """keep_mass = 1 keeps the saliency noise outside the square: the region grows. The test above
    thus depends on the thresholding."""
    image, gradcam, saliency, square = planted(3, 64, 48, 20, 10, 12)
    mask = candidate_regions(image, gradcam, saliency, keep_mass=1.0).mask()
    assert region_coverage(mask, square) == 1.0
    assert region_iou(mask, square) < 0.5


def test_torch_and_numpy_inputs_agree():
    image, gradcam, saliency, _ = planted(3, 64, 48, 20, 10, 12)
    a = candidate_regions(image, gradcam, saliency)
    b = candidate_regions(torch.tensor(image, dtype=torch.float64), torch.tensor(gradcam)[None],
                          torch.tensor(saliency, requires_grad=True))
    np.testing.assert_array_equal(a.segments, b.segments)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.combined, b.combined)


# -- sign selection --------------------------------------------------------------------------------
def two_blobs():
    """A grey 40 x 40 image with a bright square A (positive attribution) and a dark square B
    (negative attribution); the saliency is zero elsewhere."""
    image = np.full((1, 40, 40), 0.5)
    a, b = square_mask((40, 40), 4, 4, 8), square_mask((40, 40), 26, 26, 8)
    image[0][a], image[0][b] = 0.95, 0.05
    saliency = np.zeros((1, 40, 40))
    saliency[0][a], saliency[0][b] = 1.0, -1.0
    gradcam = bump((10, 10), (1.5, 1.5), 1.0) - bump((10, 10), (7.0, 7.0), 1.0)   # 10 x 10, upsampled
    return image, gradcam, saliency, a, b


@pytest.mark.parametrize("sign, covers, avoids", [("positive", "a", "b"), ("negative", "b", "a")])
def test_sign_selects_the_planted_blob(sign, covers, avoids):
    image, gradcam, saliency, a, b = two_blobs()
    blobs = {"a": a, "b": b}
    mask = candidate_regions(image, gradcam, saliency, sign=sign, keep_mass=1.0).mask()
    assert region_coverage(mask, blobs[covers]) == 1.0
    assert region_iou(mask, blobs[covers]) >= 0.9
    assert not (mask & blobs[avoids]).any()


def test_absolute_selects_both_blobs():
    image, gradcam, saliency, a, b = two_blobs()
    mask = candidate_regions(image, gradcam, saliency, sign="absolute", keep_mass=1.0).mask()
    assert region_coverage(mask, a | b) == 1.0
    assert region_iou(mask, a | b) >= 0.9


def test_channels_are_summed_after_the_sign():
    """(+2, -2) in two channels: positive part 2, negative part 2, magnitude 4 - not the cancelled 0."""
    image = np.full((2, 4, 4), 0.5)
    saliency = np.zeros((2, 4, 4))
    saliency[:, 1, 2] = (2.0, -2.0)
    one = [np.zeros((4, 4), dtype=int)]
    for sign, value in (("positive", 2.0), ("negative", 2.0), ("absolute", 4.0)):
        gradcam = np.full((4, 4), -1.0 if sign == "negative" else 1.0)
        combined = candidate_regions(image, gradcam, saliency, sign=sign, keep_mass=1.0, segmentations=one).combined
        assert combined[1, 2] == value
        assert np.count_nonzero(combined) == 1


# -- thresholding: the kept L1 mass ----------------------------------------------------------------
def test_mass_threshold_closed_form():
    values = np.random.default_rng(0).permutation(np.arange(1.0, 21.0)).reshape(4, 5)   # 1..20, total 210
    # keep 0.5: 20 + 19 + ... + 15 = 105 = 0.5 * 210 (the bound is reached), + 14 would give 119
    kept = mass_threshold(values, 0.5)
    np.testing.assert_array_equal(kept, np.where(values >= 15, values, 0))
    assert kept.sum() == 105
    # keep 0.45 (94.5): 20 + ... + 16 = 90
    np.testing.assert_array_equal(mass_threshold(values, 0.45), np.where(values >= 16, values, 0))
    # keep 1: everything; a tiny fraction: nothing (20 alone exceeds it)
    np.testing.assert_array_equal(mass_threshold(values, 1.0), values)
    assert not mass_threshold(values, 0.05).any()


def test_mass_threshold_keeps_or_drops_ties_together():
    v = np.array([2.0, 2.0, 1.0, 0.0])   # total 5; the 2s together carry 4
    assert not mass_threshold(v, 0.6).any()          # 4 > 3: no threshold keeps one 2 without the other
    np.testing.assert_array_equal(mass_threshold(v, 0.8), [2.0, 2.0, 0.0, 0.0])


def test_mass_threshold_is_the_largest_upper_set_within_the_bound():
    rng = np.random.default_rng(1)
    for keep in (0.05, 0.2, 0.5, 0.9):
        v = rng.exponential(size=(17, 13))
        kept = mass_threshold(v, keep)
        assert kept.sum() <= keep * v.sum() * (1 + 1e-12)
        assert (kept == np.where(kept > 0, v, 0)).all()                       # values kept unchanged
        if (kept == 0).any():
            dropped = v[kept == 0]
            assert (dropped < kept[kept > 0].min()).all() if kept.any() else True   # an upper set
            assert kept.sum() + dropped.max() > keep * v.sum()                # the next value breaks the bound


def test_combined_map_is_the_product_of_the_thresholded_maps():
    """[002] steps 3-4 (Fig. 4.4 (h)): threshold V and U, then multiply; thresholding the product
    instead gives another map on this input."""
    rng = np.random.default_rng(2)
    image = rng.random((3, 12, 10))
    saliency, gradcam = rng.standard_normal((3, 12, 10)), rng.standard_normal((12, 10))
    combined = candidate_regions(image, gradcam, saliency, keep_mass=0.3, n_segments=(10,)).combined
    v, u = np.clip(saliency, 0, None).sum(0), np.clip(gradcam, 0, None)
    expected = mass_threshold(v, 0.3) * mass_threshold(u, 0.3)
    np.testing.assert_allclose(combined, expected)
    assert expected.any()
    assert not np.allclose(mass_threshold(v * u, 0.3), expected)


def test_the_layer_map_is_upsampled_bilinearly():
    rng = np.random.default_rng(3)
    image, saliency = rng.random((1, 28, 28)), rng.standard_normal((1, 28, 28))
    layer_map = rng.standard_normal((11, 11))
    upsampled = F.interpolate(torch.tensor(layer_map)[None, None], size=(28, 28), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
    a = candidate_regions(image, layer_map, saliency, keep_mass=0.5, n_segments=(20,))
    b = candidate_regions(image, upsampled, saliency, keep_mass=0.5, n_segments=(20,))
    np.testing.assert_array_equal(a.combined, b.combined)
    assert a.combined.any()
    nearest = np.kron(layer_map, np.ones((3, 3)))[:28, :28]
    assert not np.array_equal(a.combined, candidate_regions(image, nearest, saliency, keep_mass=0.5,
                                                                  n_segments=(20,)).combined)


# -- the segmentation with the smallest selected area ----------------------------------------------
def test_the_smallest_selected_area_wins():
    image = np.full((1, 8, 8), 0.5)
    gradcam, saliency = np.ones((8, 8)), np.zeros((1, 8, 8))
    saliency[0, 1, 1] = saliency[0, 6, 6] = 1.0                       # W > 0 at (1, 1) and (6, 6)
    halves = np.repeat([[0] * 4 + [1] * 4], 8, axis=0)                # both points: 2 halves, 64 px
    quarters = (np.arange(8)[:, None] // 4) * 2 + np.arange(8)[None, :] // 4   # 2 quarters, 32 px
    blocks = (np.arange(8)[:, None] // 2) * 4 + np.arange(8)[None, :] // 2     # 2 blocks of 4, 8 px
    regions = candidate_regions(image, gradcam, saliency, keep_mass=1.0, segmentations=[halves, blocks, quarters])
    assert regions.areas == (64, 8, 32)
    assert regions.choice == 1 and regions.n_segments is None
    np.testing.assert_array_equal(regions.segments, blocks)
    np.testing.assert_array_equal(regions.ids, [0, 15])
    expected = np.zeros((8, 8), dtype=bool)
    expected[0:2, 0:2] = expected[6:8, 6:8] = True
    np.testing.assert_array_equal(regions.mask(), expected)
    np.testing.assert_array_equal(regions.mask([15]), expected & (blocks == 15))   # the segments a person accepts
    # equal areas: the first in order
    assert candidate_regions(image, gradcam, saliency, keep_mass=1.0, segmentations=[blocks, blocks.T]).choice == 0


def test_slic_segmentations_are_compared_by_selected_area():
    image, gradcam, saliency, _ = planted(3, 64, 48, 20, 10, 12, seed=1)
    n_segments = (8, 30, 100)
    regions = candidate_regions(image, gradcam, saliency, n_segments=n_segments)
    rgb = np.moveaxis(image, 0, -1)
    areas = []
    for n in n_segments:
        labels = slic(rgb, n_segments=n, compactness=10.0, start_label=0)
        areas.append(int(np.isin(labels, np.unique(labels[regions.combined > 0])).sum()))
    assert regions.areas == tuple(areas) and regions.n_segments == n_segments
    assert len(set(areas)) > 1
    assert regions.mask().sum() == min(areas)
    np.testing.assert_array_equal(
        regions.segments, slic(rgb, n_segments=n_segments[int(np.argmin(areas))], compactness=10.0, start_label=0))


def test_nothing_kept_gives_no_candidate():
    image = np.full((1, 16, 16), 0.5)
    regions = candidate_regions(image, np.ones((4, 4)), -np.ones((1, 16, 16)), n_segments=(4,))   # no positive part
    assert len(regions.ids) == 0 and not regions.mask().any() and regions.areas == (0,)


# -- bad input: one line, naming the fix -----------------------------------------------------------
GOOD = dict(image=np.full((1, 8, 8), 0.5), gradcam=np.ones((2, 2)), saliency=np.ones((1, 8, 8)))


@pytest.mark.parametrize("change, words", [
    (dict(image=np.full((8, 8), 0.5)), "C x H x W"),
    (dict(image=np.full((1, 1, 8, 8), 0.5)), "C x H x W"),
    (dict(image=np.full((1, 8, 8), 3.0)), "[0, 1]"),
    (dict(gradcam=np.ones((16, 16))), "h <= 8"),
    (dict(gradcam=np.ones((2, 2, 2))), "1 x h x w"),
    (dict(saliency=np.ones((1, 8, 7))), "8 x 8"),
    (dict(saliency=np.full((1, 8, 8), np.nan)), "finite"),
    (dict(keep_mass=0.0), "(0, 1]"),
    (dict(keep_mass=1.5), "(0, 1]"),
    (dict(sign="pos"), "positive, negative, absolute"),
    (dict(n_segments=(0,)), "positive integers"),
    (dict(segmentations=[np.zeros((8, 7))]), "8 x 8"),
    (dict(segmentations=[np.zeros((8, 8))], compactness=1.0), "drop them"),
])
def test_bad_input_is_one_line(change, words):
    with pytest.raises(RegionError) as err:
        candidate_regions(**{**GOOD, **change})
    assert isinstance(err.value, EBNNError)
    assert "\n" not in str(err.value) and words in str(err.value)


def test_mask_refuses_unknown_segments():
    regions = candidate_regions(**GOOD, n_segments=(2,))
    with pytest.raises(RegionError, match="not in the segmentation"):
        regions.mask([999])


# -- Captum maps on a tiny plain CNN ------------------------------------------------------------
class TinyCNN(nn.Module):
    """conv -> ReLU -> [max pool] -> evidence_layer (conv) -> ReLU -> linear."""

    def __init__(self, channels, size, pool, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.evidence_layer = nn.Conv2d(4, 5, 3, padding=1)
        inner = (size[0] // 2, size[1] // 2) if pool else size
        self.fc = nn.Linear(5 * inner[0] * inner[1], classes)

    def forward(self, x):
        a = self.evidence_layer(self.pool(torch.relu(self.conv(x))))
        return self.fc(torch.relu(a).flatten(1))


def hand_maps(net, x, y):
    """Grad-CAM by hand: per channel the spatial mean of d logit_y / dA times A, summed over channels
    (no ReLU), upsampled bilinearly; saliency: d logit_y / dx."""
    x = x.clone().requires_grad_(True)
    kept = {}
    hook = net.evidence_layer.register_forward_hook(lambda m, i, out: kept.update(a=out))
    logit = net(x).gather(1, y[:, None]).sum()
    hook.remove()
    d_a, d_x = torch.autograd.grad(logit, [kept["a"], x])
    cam = (d_a.mean((2, 3), keepdim=True) * kept["a"]).sum(1, keepdim=True)
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
    return cam.detach(), d_x


@pytest.mark.parametrize("channels, size, pool", [(1, (9, 9), False), (3, (13, 11), True), (5, (10, 14), True)])
def test_attribution_maps_equal_the_hand_computation(channels, size, pool):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = TinyCNN(channels, size, pool).double().eval()
    x = torch.rand(4, channels, *size, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    gradcam, saliency = attribution_maps(net, x, y)
    assert gradcam.shape == (4, 1, *size) and saliency.shape == (4, channels, *size)
    cam, grad = hand_maps(net, x, y)
    torch.testing.assert_close(gradcam, cam)
    torch.testing.assert_close(saliency, grad)
    assert (gradcam < 0).any() and (gradcam > 0).any()          # no ReLU: both signs kept
    regions = candidate_regions(x[0].clamp(0, 1), gradcam[0], saliency[0], n_segments=(5, 10))
    assert regions.segments.shape == size


def test_attribution_maps_feed_candidate_regions_like_the_layer_map():
    """The helper's upsampled Grad-CAM and the last convolution's map give the same candidates."""
    torch.set_num_threads(1)
    torch.manual_seed(1)
    net = TinyCNN(1, (28, 28), pool=True).double().eval()
    x = torch.rand(1, 1, 28, 28, dtype=torch.float64)
    y = torch.tensor([2])
    gradcam, saliency = attribution_maps(net, x, y)
    layer_map = LayerGradCam(net, net.evidence_layer).attribute(x, target=y, relu_attributions=False)
    assert layer_map.shape == (1, 1, 14, 14)
    a = candidate_regions(x[0], layer_map[0], saliency[0], "absolute", 0.5, n_segments=(30,))
    b = candidate_regions(x[0], gradcam[0], saliency[0], "absolute", 0.5, n_segments=(30,))
    np.testing.assert_allclose(a.combined, b.combined, atol=1e-12)
    assert a.combined.any()
    np.testing.assert_array_equal(a.mask(), b.mask())


def test_attribution_maps_refuses_a_network_without_evidence_layer():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with pytest.raises(RegionError, match="evidence_layer") as err:
        attribution_maps(net, torch.rand(2, 1, 8, 8), [0, 1])
    assert "\n" not in str(err.value)
    with pytest.raises(RegionError, match="one class per image"):
        attribution_maps(TinyCNN(1, (8, 8), False), torch.rand(2, 1, 8, 8), [0, 1, 2])


# -- measures -------------------------------------------------------------------------------------
def test_iou_and_coverage_by_hand():
    truth = np.zeros((3, 4, 4), dtype=bool)
    found = np.zeros((3, 4, 4), dtype=bool)
    truth[0, :2, :2] = True                    # 4 px
    found[0, :2, :3] = True                    # 6 px, 4 shared: IoU 4/6, coverage 1
    truth[1, :, 0] = True                      # 4 px
    found[1, :2, :2] = True                    # 4 px, 2 shared: IoU 2/6, coverage 2/4
    found[2, 3, 3] = True                      # empty truth: IoU 0, coverage undefined
    np.testing.assert_allclose(region_iou(found, truth), [4 / 6, 2 / 6, 0.0])
    cov = region_coverage(torch.tensor(found), torch.tensor(truth).float())
    np.testing.assert_allclose(cov[:2], [1.0, 0.5])
    assert np.isnan(cov[2])
    assert np.isnan(region_iou(np.zeros((4, 4)), np.zeros((4, 4))))
    assert float(region_iou(found[1], truth[1])) == pytest.approx(2 / 6)
    with pytest.raises(RegionError, match="same shape"):
        region_iou(found, truth[:2])


# -- proposals: blobs beside the thesis' method ------------------------------------------------------
@pytest.mark.parametrize("channels, size, top, left, side", [
    (1, 28, 20, 2, 4),       # a 4 x 4 decoy on a 28-px digit
    (1, 28, 1, 22, 4),
    (3, 64, 30, 10, 12),     # a 12-px patch on a 64-px photograph
    (3, 224, 50, 100, 40),
])
def test_blobs_find_a_planted_square(channels, size, top, left, side):
    for seed in range(3):
        image, gradcam, saliency, square = planted(channels, size, size, top, left, side, seed)
        regions = proposal_regions(image, gradcam, saliency)              # the default: blobs
        assert regions.segments.shape == (size, size) and len(regions.ids) >= 1
        best = max(float(region_iou(regions.mask([i]), square)) for i in regions.ids)
        assert best >= 0.9
        assert float(region_iou(regions.mask(regions.ids[:1]), square)) == best   # the strongest first


def test_blobs_are_the_strongest_components_first():
    heat = np.zeros((20, 20))
    heat[2:5, 2:5], heat[12:18, 12:18], heat[0, 19] = 1.0, 0.5, 0.05     # masses 9, 18; one below the level
    labels = blobs(heat, level=0.2)
    assert (labels[12:18, 12:18] == 1).all() and (labels[2:5, 2:5] == 2).all() and labels.max() == 2
    assert blobs(heat, level=0.2, max_blobs=1).max() == 1


def test_growing_takes_the_touched_superpixels_as_strong_as_the_blobs_core():
    superpixels = np.repeat(np.arange(4), 4)[None].repeat(2, 0)          # 2 x 16, four 2 x 4 superpixels
    heat = np.zeros((2, 16))
    heat[:, 4:8], heat[:, 8:12], heat[:, 0:4] = 1.0, 0.2, 0.6            # core, weak rim, strong neighbour
    blob = np.zeros((2, 16), int)
    blob[:, 3:10] = 1                                                    # touches superpixels 0, 1 and 2
    blob[:, 12:14] = 2                                                   # a weaker blob on superpixel 3
    grown = grow_to_superpixels(blob, superpixels, heat)
    np.testing.assert_array_equal(grown[0], [1] * 8 + [0] * 4 + [2] * 4)
    blob[:, 12:14] = 0
    blob[:, 5:7] = 2                                                     # inside blob 1's superpixels: dropped
    assert set(np.unique(grow_to_superpixels(blob, superpixels, heat))) == {0, 1}


@pytest.mark.parametrize("gradcam_sign, saliency_scale", [(1.0, 1.0), (-1.0, 1.0), (-1.0, 0.0)])
def test_every_image_gets_a_proposal(gradcam_sign, saliency_scale):
    """Also where W = U+ V+ is zero (Grad-CAM negative everywhere) and where the saliency is zero."""
    rng = np.random.default_rng(4)
    for size in (8, 28, 40):
        image = rng.random((1, size, size))
        gradcam = gradcam_sign * rng.random((size // 4, size // 4))
        saliency = saliency_scale * rng.standard_normal((1, size, size))
        regions = proposal_regions(image, gradcam, saliency, "blobs")
        assert 1 <= len(regions.ids) <= MAX_BLOBS and regions.mask().any()
        assert set(regions.ids) <= set(np.unique(regions.segments))
    thesis = proposal_regions(image, -np.ones((10, 10)), np.ones((1, 40, 40)), "thesis")
    assert len(thesis.ids) == 0                                         # the thesis' method can propose nothing


def test_fine_superpixels_scale_with_the_image():
    for size in (28, 64, 224):
        side = size / np.sqrt(fine_segments((size, size)))
        assert side == pytest.approx(size / 7, rel=0.05)
    image = np.zeros((1, 28, 28))
    image[0, 2:6, 2:6] = 1.0                                            # a 4 x 4 decoy: one fine segment
    regions = blob_regions(image, np.ones((7, 7)), image)
    assert float(region_iou(regions.mask(regions.ids[:1]), image[0] > 0)) == 1.0


def test_the_thesis_method_is_selectable_and_unchanged():
    image, gradcam, saliency, _ = planted(3, 64, 48, 20, 10, 12)
    for options in ({}, {"keep_mass": 0.5, "n_segments": (20, 40)}, {"sign": "absolute"}):
        a = proposal_regions(image, gradcam, saliency, "thesis", **options)
        b = candidate_regions(image, gradcam, saliency, **options)
        np.testing.assert_array_equal(a.segments, b.segments)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.combined, b.combined)
        assert a.areas == b.areas and a.n_segments == b.n_segments
    assert DEFAULT_PROPOSALS == "blobs" and PROPOSALS == ("blobs", "thesis")


@pytest.mark.parametrize("change, words", [
    (dict(proposals="superpixels"), "blobs, thesis"),
    (dict(level=0.0), "(0, 1]"),
    (dict(max_blobs=0), "positive integer"),
    (dict(sigma=-1.0), "non-negative"),
    (dict(n_segments=0), "positive integers"),
])
def test_bad_proposal_options_are_one_line(change, words):
    with pytest.raises(RegionError) as err:
        proposal_regions(**{**GOOD, **change})
    assert "\n" not in str(err.value) and words in str(err.value)
