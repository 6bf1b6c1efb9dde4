"""Incomplete and wrong feedback (pyro_ebnn.data.noise, config key feedback_noise): what each keeps or
moves, on single masks and through prepare_split on a real .npz set and an image folder; bad values
are one line."""
import numpy as np
import pytest
import torch

from image_fixtures import write_folder
from pyro_ebnn.data import ImageSet, in_memory, load_dataset
from pyro_ebnn.data.noise import incomplete_mask, parse_feedback_noise, with_feedback_noise, wrong_mask
from pyro_ebnn.errors import ConfigError, DataError
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.protocol import prepare_split


def _square(size=28, top=2, left=3, side=4):
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


@pytest.mark.parametrize("fraction,kept", [(0.25, 4), (0.5, 8), (0.75, 12), (1.0, 16)])
def test_incomplete_keeps_a_straight_part_of_the_square(fraction, kept):
    square = _square()
    for seed in range(20):
        part = incomplete_mask(square, fraction, np.random.default_rng(seed))
        assert part.sum() == kept and not (part & ~square).any()
        rows, cols = np.nonzero(part)
        assert len(set(rows)) == 4 or len(set(cols)) == 4     # whole rows or whole columns of the square


def test_incomplete_on_four_corners_keeps_two_of_them_at_one_half():
    corners = np.zeros((28, 28), bool)
    for top in (0, 24):
        for left in (0, 24):
            corners[top:top + 4, left:left + 4] = True
    part = incomplete_mask(corners, 0.5, np.random.default_rng(0))
    assert part.sum() == 32 and not (part & ~corners).any()


def test_wrong_moves_the_mask_off_itself_keeping_its_shape():
    square = _square()
    for seed in range(20):
        moved = wrong_mask(square, np.random.default_rng(seed))
        assert moved.sum() == 16 and not (moved & square).any()
        rows, cols = np.nonzero(moved)
        assert len(set(rows)) == 4 and len(set(cols)) == 4
    assert not wrong_mask(np.zeros((5, 5), bool), np.random.default_rng(0)).any()


def test_wrong_moves_the_given_share_of_masked_images_and_leaves_unmasked_ones_alone():
    masks = torch.zeros(40, 1, 28, 28, dtype=torch.bool)
    masks[:30, 0, 2:6, 3:7] = True
    images = ImageSet(torch.rand(40, 1, 28, 28), torch.zeros(40, dtype=torch.long), masks, 2)
    out = with_feedback_noise(images, "wrong:0.5", seed=1)
    moved = (out.masks != masks).flatten(1).any(1)
    assert int(moved.sum()) == 15 and not moved[30:].any()
    assert torch.equal(out.masks.flatten(1).sum(1), masks.flatten(1).sum(1))
    assert torch.equal(out.images, images.images)
    again = with_feedback_noise(images, "wrong:0.5", seed=1)
    assert torch.equal(again.masks, out.masks)                 # reproducible
    assert with_feedback_noise(images, None, seed=1) is images


def test_prepare_split_degrades_training_and_validation_masks_only(tmp_path):
    from test_inputs import _write_npz
    _write_npz(tmp_path / "d.npz")
    base = {"npz_path": str(tmp_path / "d.npz"), "mask_fraction": 1.0, "validation_decoys": "train"}
    clean = prepare_split(load_config("configs/custom_npz.yaml", base))
    half = prepare_split(load_config("configs/custom_npz.yaml", {**base, "feedback_noise": "incomplete:0.5"}))
    for a, b in ((clean.train, half.train), (clean.val, half.val)):
        assert torch.equal(a.images, b.images) and torch.equal(a.has_mask, b.has_mask)
        assert not (b.masks & ~a.masks).any() and b.masks.sum() < 0.8 * a.masks.sum()
    assert torch.equal(clean.test.masks, half.test.masks)


def test_streamed_folders_get_the_same_noise_as_in_memory_ones(tmp_path):
    cfg = load_config("configs/image_folder.yaml", {"data_dir": str(write_folder(tmp_path / "p")), "image_size": 8,
                                                     "pretrained": False, "architecture": "lenet"})
    streamed, _ = load_dataset(cfg)
    out = with_feedback_noise(streamed, "wrong:1", seed=3)
    expected = with_feedback_noise(in_memory(streamed), "wrong:1", seed=3)
    assert torch.equal(in_memory(out).masks, expected.masks)
    assert torch.equal(out.has_mask, streamed.has_mask)


def test_bad_values_are_one_line():
    for bad in ("incomplete", "wrong:0", "wrong:1.5", "half:0.5", "wrong:x"):
        with pytest.raises(DataError, match="KIND:F"):
            parse_feedback_noise(bad)
        with pytest.raises(ConfigError, match="config key 'feedback_noise'"):
            load_config(None, {"feedback_noise": bad})
    assert parse_feedback_noise("none") is None
