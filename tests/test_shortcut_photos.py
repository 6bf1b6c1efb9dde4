"""experiments/shortcut_photos.py: a tiny version of the real-photo shortcut task, written from the
command line as a user runs it, read back through the image-folder config."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from pyro_ebnn.data import in_memory, load_dataset
from pyro_ebnn.experiment.config import load_config

ROOT = Path(__file__).resolve().parents[1]
MAGENTA = torch.tensor([1.0, 0.0, 1.0])


def test_the_shortcut_task_patches_every_training_image_of_one_class_and_half_of_each_test_class(tmp_path):
    out = tmp_path / "task"
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "shortcut_photos.py"), "--out", str(out),
                          "--train", "12", "--test", "8", "--size", "32", "--patch", "6", "--seed", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "shortcut_photos.json").read_text())
    assert summary["counts"]["train/everyday"] == {"images": 6, "with_patch": 6}
    assert summary["counts"]["train/scientific"] == {"images": 6, "with_patch": 0}
    assert summary["counts"]["test/everyday"] == summary["counts"]["test/scientific"] == {"images": 4, "with_patch": 2}

    cfg = load_config("configs/image_folder.yaml", {"data_dir": str(out), "image_size": 32, "pretrained": False})
    trainval, sets = load_dataset(cfg)
    train, test = in_memory(trainval), in_memory(sets["test"])
    assert train.class_names == ["everyday", "scientific"] and train.images.shape == (12, 3, 32, 32)
    for data in (train, test):
        for x, y, m in zip(data.images, data.labels, data.masks):
            if m.any():
                assert int(m.sum()) == 36                                      # the 6 x 6 patch, and only it
                assert torch.allclose(x[:, m[0]].T, MAGENTA.expand(36, 3), atol=1 / 255)
            else:
                # no patch anywhere: no 6 x 6 magenta square (a magenta pixel count well below 36)
                magenta = (x - MAGENTA.view(3, 1, 1)).abs().amax(0) < 0.02
                assert int(magenta.sum()) < 36
    assert train.masks.flatten(1).any(1).tolist() == [True] * 6 + [False] * 6
    patched = test.masks.flatten(1).any(1)
    assert patched[test.labels == 0].sum() == 2 and patched[test.labels == 1].sum() == 2

    again = tmp_path / "again"
    subprocess.run([sys.executable, str(ROOT / "experiments" / "shortcut_photos.py"), "--out", str(again), "--train",
                    "12", "--test", "8", "--size", "32", "--patch", "6", "--seed", "1"], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    assert (again / "train" / "everyday" / "00003.png").read_bytes() == (out / "train" / "everyday" / "00003.png").read_bytes()


def test_patch_sensitivity_pastes_the_tasks_patch_where_its_placement_rule_says():
    import importlib.util
    spec = importlib.util.spec_from_file_location("patch_sensitivity", ROOT / "experiments" / "patch_sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images = torch.zeros(20, 3, 64, 64)
    for placement, inside in (("random", None), ("corner", {(0, 0), (0, 56), (56, 0), (56, 56)})):
        task = {"patch": 16, "size": 128, "colour": [255, 0, 255], "placement": placement}
        x, where = module.pasted(images, task, seed=3)
        assert where.flatten(1).sum(1).tolist() == [64] * 20                  # 16 px at 128 -> 8 x 8 at 64
        assert torch.equal(x.permute(1, 0, 2, 3)[:, where[:, 0]].T, MAGENTA.expand(64 * 20, 3))
        assert torch.equal(x[~where.expand_as(x)], images[~where.expand_as(x)])   # nothing else changed
        corners = {tuple(int(v) for v in w[0].nonzero().min(0).values) for w in where}
        assert corners <= inside if inside else len(corners) > 10


def test_clean_training_keeps_every_crop_and_the_test_set_and_drops_only_the_square(tmp_path):
    import importlib.util
    import numpy as np
    from PIL import Image
    spec = importlib.util.spec_from_file_location("shortcut_photos", ROOT / "experiments" / "shortcut_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setting = dict(n_train=10, n_test=6, size=24, patch=5, seed=2, placement="corner", fraction=0.9)
    module.build_shortcut_photos(tmp_path / "shortcut", **setting)
    summary = module.build_shortcut_photos(tmp_path / "clean", clean_train=True, **setting)
    assert summary["counts"]["train/everyday"] == {"images": 5, "with_patch": 0}
    assert not (tmp_path / "clean" / "train_masks").exists() and (tmp_path / "shortcut" / "train_masks").exists()
    read = lambda path: np.array(Image.open(path)).astype(int)
    for path in sorted((tmp_path / "shortcut").rglob("*.png")):
        part = path.relative_to(tmp_path / "shortcut")
        if part.parts[0] == "train_masks":
            continue
        differs = (read(path) != read(tmp_path / "clean" / part)).any(-1)
        if part.parts[0] == "train":
            mask = tmp_path / "shortcut" / "train_masks" / Path(*part.parts[1:])
            expected = read(mask) > 0 if mask.exists() else np.zeros_like(differs)
            assert not (differs & ~expected).any()              # nothing but the square's pixels changed
            assert differs.sum() >= (expected.sum() * 0.9)      # and the square is gone (a green pixel may stay)
        else:
            assert not differs.any()                            # the test set and its masks are the same files


def test_the_family_and_colour_of_a_preset_can_be_changed_from_the_command_line(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("shortcut_photos", ROOT / "experiments" / "shortcut_photos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path), "--task", "moving", "--family", "living", "--colour", "red", "--size", "24",
                 "--patch", "5", "--train", "6", "--test", "4"])
    summary = json.loads((tmp_path / "shortcut_photos.json").read_text())
    assert summary["classes"] == ["living", "made"] and summary["colour"] == [230, 0, 0]
    assert summary["placement"] == "random" and summary["fraction"] == 0.9          # the rest is the preset's


def test_the_digit_shortcut_task_has_five_classes_and_squares_on_one_class_in_training(tmp_path):
    out = tmp_path / "digits"
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "shortcut_digits.py"), "--out", str(out),
                          "--task", "faint", "--train", "4", "--test", "6", "--size", "32", "--patch", "6",
                          "--shortcut", "one", "--seed", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "shortcut_digits.json").read_text())
    assert summary["train_squares"] == 4 and summary["fraction"] == 1.0          # every image of "one"

    cfg = load_config("configs/image_folder_small.yaml", {"data_dir": str(out), "image_size": 32})
    trainval, sets = load_dataset(cfg)
    train, test = in_memory(trainval), in_memory(sets["test"])
    assert train.class_names == ["four", "one", "three", "two", "zero"] and train.images.shape == (20, 3, 32, 32)
    one = train.class_names.index("one")
    assert train.masks.flatten(1).any(1).tolist() == (train.labels == one).tolist()
    red = torch.tensor([230, 30, 30]) / 255
    for data in (train, test):
        for x, m in zip(data.images, data.masks):
            if m.any():
                assert int(m.sum()) == 36 and torch.allclose(x[:, m[0]].T, red.expand(36, 3), atol=1 / 255)
    assert 0 < int(test.masks.flatten(1).any(1).sum()) < 30                      # about half of the test images
