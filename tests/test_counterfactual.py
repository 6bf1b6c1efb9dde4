"""Counterfactual validation images (validation_decoys: noise | swap) for in-memory and streamed
image sets, and prepare_split's counterfactual and ordinary validation sets."""
import numpy as np
import pytest
import torch

from pyro_ebnn.data import CounterfactualImages, ImageSet, counterfactual, in_memory, load_dataset
from pyro_ebnn.errors import DataError
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.protocol import prepare_split

from image_fixtures import write_folder
from test_inputs import _write_npz


def _images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.25 + 0.5 * torch.rand(n, 3, 8, 8, generator=g)
    m = torch.zeros(n, 1, 8, 8, dtype=torch.bool)
    m[::2, :, :3, :3] = True                      # every other image has a mask in its top-left corner
    return ImageSet(x, torch.arange(n) % 3, m, 3)


def test_noise_replaces_exactly_the_masked_pixels_seeded_per_image():
    data = _images()
    cf = counterfactual(data, "noise", seed=1)
    assert isinstance(cf, ImageSet) and torch.equal(cf.masks, data.masks) and torch.equal(cf.labels, data.labels)
    inside = data.masks.expand_as(data.images)
    assert torch.equal(cf.images[~inside], data.images[~inside])          # unmasked pixels unchanged
    assert not torch.isclose(cf.images[inside], data.images[inside]).any()
    assert cf.images.min() >= 0 and cf.images.max() <= 1
    assert torch.equal(counterfactual(data, "noise", seed=1).images, cf.images)
    assert not torch.equal(counterfactual(data, "noise", seed=2).images, cf.images)
    assert not torch.equal(cf.images[0, :, :3, :3], cf.images[2, :, :3, :3])   # fresh noise per image
    assert torch.equal(cf.images[1], data.images[1])                         # no mask, no change


def test_swap_transplants_the_region_from_an_image_of_another_class():
    data = _images()
    wrapper = CounterfactualImages(data, "swap", seed=0)
    cf = counterfactual(data, "swap", seed=0)
    for i in range(len(data)):
        donor = int(wrapper.donors[i])
        assert data.labels[donor] != data.labels[i]
        if data.masks[i].any():
            assert torch.equal(cf.images[i, :, :3, :3], data.images[donor, :, :3, :3])
            assert torch.equal(cf.images[i, :, 3:], data.images[i, :, 3:])
        else:
            assert torch.equal(cf.images[i], data.images[i])
    one_class = ImageSet(data.images, torch.zeros(6, dtype=torch.long), data.masks, 3)
    with pytest.raises(DataError, match="the validation images hold one class only; use validation_decoys: noise"):
        counterfactual(one_class, "swap", seed=0)


def test_exchange_swaps_the_marked_region_with_an_unmasked_image_of_another_class():
    # masks on class 0 only, as a shortcut on one class: exchange also puts the marked pixels on class 1
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 8, 8, generator=g)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    m = torch.zeros(8, 1, 8, 8, dtype=torch.bool)
    m[:4, :, 5:, 5:] = True
    data = ImageSet(x, y, m, 2)
    wrapper = CounterfactualImages(data, "exchange", seed=4)
    cf = counterfactual(data, "exchange", seed=4)
    swapped = counterfactual(data, "swap", seed=4)
    assert torch.equal(cf.images[:4], swapped.images[:4])              # the masked images: as swap
    assert torch.equal(cf.masks, data.masks) and torch.equal(cf.labels, data.labels)
    receivers = set()
    for i in range(4):
        partner = int(wrapper.donors[i])
        assert y[partner] == 1
        if partner not in receivers:                                     # the first giver wins
            receivers.add(partner)
            assert torch.equal(cf.images[partner, :, 5:, 5:], x[i, :, 5:, 5:])
            assert torch.equal(cf.images[partner, :, :5], x[partner, :, :5])
    for k in set(range(4, 8)) - receivers:
        assert torch.equal(cf.images[k], x[k])                           # not drawn: unchanged
    assert receivers                                                     # something was received
    # every image masked: exchange is swap (nobody has an unmasked partner)
    full = ImageSet(x, y, torch.ones_like(m), 2)
    assert torch.equal(counterfactual(full, "exchange", seed=4).images, counterfactual(full, "swap", seed=4).images)


def test_streamed_sets_get_the_same_counterfactuals_as_in_memory_ones(tmp_path):
    cfg = load_config("configs/image_folder.yaml", {"data_dir": str(write_folder(tmp_path / "p")), "image_size": 8,
                                                     "pretrained": False, "architecture": "lenet"})
    streamed, _ = load_dataset(cfg)
    for kind in ("noise", "swap", "exchange"):
        wrapped = counterfactual(streamed, kind, seed=3)
        assert isinstance(wrapped, CounterfactualImages)
        assert torch.equal(in_memory(wrapped).images, counterfactual(in_memory(streamed), kind, seed=3).images)
        part = wrapped.subset([4, 0]).keep_masks(torch.tensor([False, True]))
        assert part.labels.tolist() == [1, 0] and part.has_mask.tolist() == [False, True]
        x, _, m = part[0]
        assert torch.equal(x, wrapped[4][0]) and not m.any()     # keep_masks drops the mask, not the replacement


def test_prepare_split_validates_on_counterfactuals_and_keeps_the_ordinary_images(tmp_path):
    _write_npz(tmp_path / "d.npz")
    base = {"npz_path": str(tmp_path / "d.npz"), "mask_fraction": 1.0}
    plain = prepare_split(load_config("configs/custom_npz.yaml", {**base, "validation_decoys": "train"}))
    assert plain.extra_val == {}
    for kind in ("noise", "swap", "exchange"):
        split = prepare_split(load_config("configs/custom_npz.yaml", {**base, "validation_decoys": kind}))
        ordinary = split.extra_val["ordinary"]
        assert torch.equal(ordinary.images, plain.val.images) and torch.equal(split.val.labels, plain.val.labels)
        masked = split.val.masks.expand_as(split.val.images)
        assert torch.equal(split.val.images[~masked], ordinary.images[~masked])
        assert not torch.equal(split.val.images[masked], ordinary.images[masked])
        assert torch.equal(split.train.images, plain.train.images)             # training images untouched


def test_decoy_mnist_test_rule_validation_also_exposes_the_ordinary_images():
    cfg = {"max_train_images": 300, "max_test_images": 30, "rule": "corners", "validation_decoys": "test"}
    split = prepare_split(load_config(None, cfg))
    ordinary = split.extra_val["ordinary"]
    assert torch.equal(ordinary.labels, split.val.labels) and not torch.equal(ordinary.images, split.val.images)
    grey = (ordinary.images[:, 0, 0, 0] * 255).round().long()                # the training rule: 255 - 25 y
    assert torch.equal(grey, 255 - 25 * ordinary.labels)
    assert np.isclose(len(split.train) / 2, len(split.val), atol=1)
