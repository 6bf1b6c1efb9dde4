"""Image folders (dataset: folder): the layout, streamed (image, label, mask) triples, and one line
for each kind of bad input."""
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pyro_ebnn.cli import _fail, cli
from pyro_ebnn.data import DiskImages, LabelledImages, batches, in_memory, load_dataset
from pyro_ebnn.data.streamed import check_decodes
from pyro_ebnn.errors import ConfigError, DataError
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.protocol import prepare_split
from pyro_ebnn.progress import progress_bar

from image_fixtures import COLOURS, mask_image, photo, write_folder


def _cfg(root, **kw):
    return load_config("configs/image_folder.yaml", {"data_dir": str(root), "image_size": 8, "pretrained": False,
                                                      "architecture": "lenet",  # AlexNet needs >= 31 px
                                                      "validation_decoys": "train", **kw})


def test_a_folder_builds_through_its_config_and_yields_image_label_mask_triples(tmp_path):
    root = write_folder(tmp_path / "photos", classes=("dog", "cat"), per_class=(4, 2), masked=(0, 1))
    trainval, sets = load_dataset(_cfg(root))
    assert isinstance(trainval, DiskImages) and isinstance(trainval, LabelledImages)
    assert trainval.class_names == ["cat", "dog"]                      # sorted folder names
    assert trainval.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and len(sets["test"]) == 4
    assert trainval.has_mask.tolist() == [True, True, False, False] * 2
    assert trainval.image_shape == (3, 8, 8)
    for k in (0, 2, 4):
        x, y, m = trainval[k]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and m.shape == (1, 8, 8) and m.dtype == torch.bool
        written = COLOURS[("dog", "cat").index(trainval.class_names[y])]     # the fixture's colour of the class
        colour = torch.tensor(written, dtype=torch.float32) / 255
        assert torch.allclose(x[:, 4, 4], colour, atol=1 / 255)
        # the left half of a 16 x 12 mask is the left half after resizing; no mask file = no opinion
        expected = torch.zeros(1, 8, 8, dtype=torch.bool)
        if k != 2:
            expected[..., :4] = True
        assert torch.equal(m, expected)
    assert trainval.source(0).endswith("train/cat/cat_0.png (mask " + str(root / "train_masks/cat/cat_0.png") + ")")


def test_grey_images_and_jpeg_files(tmp_path):
    root = write_folder(tmp_path / "p", ext=".jpg")
    trainval, _ = load_dataset(_cfg(root, channels=1, image_size=10, normalize="none"))
    x, y, m = trainval[5]
    assert x.shape == (1, 10, 10) and y == 1
    grey = (0.299 * 40 + 0.587 * 200 + 0.114 * 40) / 255
    assert abs(float(x[0, 5, 5]) - grey) < 0.03


def test_streamed_sets_pickle_small_and_batch_through_a_dataloader_with_workers(tmp_path):
    trainval, _ = load_dataset(_cfg(write_folder(tmp_path / "p")))
    assert len(pickle.dumps(trainval)) < 5000
    again = pickle.loads(pickle.dumps(trainval.subset([5, 1])))
    assert torch.equal(again[0][0], trainval[5][0]) and again.labels.tolist() == [1, 0]
    xs, ys, ms = zip(*batches(trainval, 3, workers=2))
    memory = in_memory(trainval)
    assert torch.equal(torch.cat(xs), memory.images) and torch.equal(torch.cat(ys), memory.labels)
    assert torch.equal(torch.cat(ms), memory.masks)


def test_subset_and_keep_masks_compose(tmp_path):
    trainval, _ = load_dataset(_cfg(write_folder(tmp_path / "p")))
    part = trainval.subset([4, 0, 1]).keep_masks(torch.tensor([True, False, True]))
    assert part.labels.tolist() == [1, 0, 0]
    assert part.has_mask.tolist() == [True, False, True]
    assert part[0][2].any() and not part[1][2].any() and part[2][2].any()


def test_the_folds_come_from_train_and_a_val_folder_replaces_them(tmp_path):
    split = prepare_split(_cfg(write_folder(tmp_path / "a"), mask_fraction=1.0))
    assert len(split.train) + len(split.val) == 8 and len(split.test) == 4
    split = prepare_split(_cfg(write_folder(tmp_path / "b", val=True), mask_fraction=1.0))
    assert len(split.train) == 8 and len(split.val) == 4 and split.val.name.endswith(":val")
    assert split.val.has_mask.tolist() == [True] * 4


def test_max_images_cap_train_and_test(tmp_path):
    trainval, sets = load_dataset(_cfg(write_folder(tmp_path / "p"), max_train_images=3, max_test_images=2))
    assert len(trainval) == 3 and len(sets["test"]) == 2


# -- bad input: one line that names the file and the fix ------------------------------------------
def _break(root, how):
    if how == "no folders":
        shutil.rmtree(root / "train")
        shutil.rmtree(root / "test")
    elif how == "mask without image":
        mask_image().save(root / "train_masks" / "cat" / "ghost.png")
    elif how == "mask size":
        mask_image(size=(10, 10), mark=(0, 0, 5, 10)).save(root / "train_masks" / "cat" / "cat_1.png")
    elif how == "unreadable":
        (root / "train" / "dog" / "dog_2.png").write_bytes(b"not an image at all")
    elif how == "not binary":
        m = np.zeros((12, 16), np.uint8)
        m[:, :4], m[:, 4:8] = 255, 128
        Image.fromarray(m).save(root / "train_masks" / "cat" / "cat_0.png")
    elif how == "empty class":
        (root / "train" / "bird").mkdir()
    elif how == "class only in test":
        (root / "test" / "bird").mkdir()
        photo(COLOURS[2]).save(root / "test" / "bird" / "bird_0.png")
    elif how == "mask not png":
        photo(COLOURS[0]).save(root / "train_masks" / "cat" / "cat_2.jpg")
    return root


@pytest.mark.parametrize("how,message", [
    ("no folders", r"lacks train/ and test/; expected .*/train/<class>/<image>\.png"),
    ("mask without image", r"ghost\.png: a mask without an image \(expected .*train/cat/ghost\.png\|\.jpg"),
    ("mask size", r"cat_1\.png: the mask is 10 x 10 pixels but its image .*cat_1\.png is 16 x 12; save the mask"),
    ("unreadable", r"dog_2\.png: cannot read the image \(UnidentifiedImageError"),
    ("empty class", r"train/bird: the class folder holds no images"),
    ("class only in test", r"test/bird: class 'bird' is in test/ but not in train/ \(train classes: cat, dog\)"),
    ("mask not png", r"cat_2\.jpg: masks must be PNG files"),
])
def test_bad_folders_are_refused_when_the_set_is_built(tmp_path, how, message):
    root = _break(write_folder(tmp_path / "p"), how)
    with pytest.raises(DataError, match=message) as e:
        load_dataset(_cfg(root))
    assert "\n" not in str(e.value)


def test_a_mask_that_is_not_binary_names_the_values_found_when_read(tmp_path):
    trainval, _ = load_dataset(_cfg(_break(write_folder(tmp_path / "p"), "not binary")))
    with pytest.raises(DataError, match=r"cat_0\.png: a mask must hold 0 .* found 3 values \(0, 128, 255\); threshold"):
        trainval[0]


def test_a_truncated_image_is_named_when_it_is_decoded(tmp_path):
    root = write_folder(tmp_path / "p", ext=".jpg")
    path = root / "train" / "dog" / "dog_3.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:3000])         # the header survives, the pixels do not
    trainval, _ = load_dataset(_cfg(root))             # headers are fine: built
    with pytest.raises(DataError, match=r"dog_3\.jpg: cannot decode the image \(OSError.*truncated"):
        trainval[7]
    with pytest.raises(DataError, match=r"dog_3\.jpg"):
        list(batches(trainval, 4, workers=1))


# -- every image decoded before training: a bad file stops the run before anything is written -------
ROOT = Path(__file__).resolve().parent.parent


def _truncated_png(path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:2000])         # the header survives, the pixels do not


def _grey_mask(path):
    m = np.zeros((12, 16), np.uint8)
    m[:, :4], m[:, 4:8] = 255, 128
    Image.fromarray(m).save(path)


@pytest.mark.parametrize("bad,message", [
    ("test/dog/dog_2.png", r"cannot decode the image \(OSError: image file is truncated"),
    ("test_masks/cat/cat_1.png", r"a mask must hold 0 .* found 3 values \(0, 128, 255\); threshold it"),
])
def test_a_bad_test_file_stops_train_before_any_epoch_and_writes_no_run_directory(tmp_path, bad, message):
    root = write_folder(tmp_path / "p", per_class=(4, 3))          # test image 2 of each class has no mask
    (_truncated_png if bad.endswith("dog_2.png") else _grey_mask)(root / bad)
    out = tmp_path / "run"
    done = CliRunner().invoke(cli, ["train", "--config", str(ROOT / "configs" / "image_folder_small.yaml"),
                                    "--set", f"data_dir={root}", "--set", "epochs=1", "--set", "image_size=16",
                                    "--out", str(out)])
    assert done.exit_code != 0 and not out.exists()
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: {root / bad}: ")   # on a line of its own
    assert re.search(message, errors[0]) and "epoch" not in done.stderr


def test_the_check_decodes_train_val_and_test_once_and_names_the_first_bad_file(tmp_path):
    root = write_folder(tmp_path / "p", per_class=(4, 3), val=True)
    trainval, sets = load_dataset(_cfg(root))
    assert check_decodes([trainval, trainval.subset([0, 1]), *sets.values()], workers=0, progress=False) == 8 + 6 + 6
    _grey_mask(root / "val_masks" / "dog" / "dog_0.png")
    _truncated_png(root / "test" / "cat" / "cat_2.png")
    trainval, sets = load_dataset(_cfg(root))                       # headers are fine: built
    with pytest.raises(DataError, match=r"val_masks/dog/dog_0\.png: a mask must hold 0") as e:
        check_decodes([trainval, *sets.values()], workers=1, progress=False)
    assert "\n" not in str(e.value)


def test_a_class_with_one_training_image_is_refused_without_a_val_folder(tmp_path):
    root = write_folder(tmp_path / "p", classes=("cat", "dog", "owl"))
    for k in (1, 2, 3):
        (root / "train" / "owl" / f"owl_{k}.png").unlink()
    (root / "train_masks" / "owl" / "owl_1.png").unlink()
    with pytest.raises(DataError, match=r"train/owl: class 'owl' has one training image, and without a val/ folder "
                                        r".* add images of it to train/owl/ or add a val/ folder") as e:
        load_dataset(_cfg(root))
    assert "\n" not in str(e.value)
    write_folder(root, classes=("cat", "dog", "owl"), masked=(), val=True)
    for k in (1, 2, 3):
        (root / "train" / "owl" / f"owl_{k}.png").unlink()
    load_dataset(_cfg(root))                                      # a val/ folder: no folds, one image may do


def test_a_class_missing_from_test_is_named_in_a_warning(tmp_path, capsys):
    root = write_folder(tmp_path / "p", classes=("cat", "dog", "owl"))
    shutil.rmtree(root / "test" / "owl")
    shutil.rmtree(root / "test_masks" / "owl")
    trainval, sets = load_dataset(_cfg(root))
    assert trainval.class_names == ["cat", "dog", "owl"] and len(sets["test"]) == 4
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [f"warning: class 'owl' is in train/ but not in test/, so the test images say nothing about it; "
                        f"add images of it to {root / 'test' / 'owl'}/"]


def test_an_error_starts_on_its_own_line_after_an_open_progress_bar(capsys):
    bar = progress_bar(total=10, desc="epoch 1")
    bar.update(3)
    with pytest.raises(SystemExit):
        _fail(DataError("x.png: cannot decode"))
    err = capsys.readouterr().err
    assert err.endswith("\nerror: x.png: cannot decode\n") and "3/10" in err


def test_config_errors_for_the_new_keys(tmp_path):
    with pytest.raises(ConfigError, match="dataset folder needs data_dir"):
        load_config(None, {"dataset": "folder"})
    with pytest.raises(ConfigError, match="use 1 .grey. or 3 .RGB., got 2"):
        _cfg(tmp_path, channels=2)
    with pytest.raises(ConfigError, match="torchvision downloads oxford_pets, sbd, decoy_fmnist only"):
        _cfg(tmp_path, download=True)
    with pytest.raises(ConfigError, match="ImageNet weights and normalization take RGB"):
        _cfg(tmp_path, channels=1)
    with pytest.raises(ConfigError, match="'test_fraction': must be in \\(0, 1\\)"):
        _cfg(tmp_path, test_fraction=1.5)
    with pytest.raises(ConfigError, match="alexnet needs image_size >= 31, got 16"):
        _cfg(tmp_path, architecture="alexnet", image_size=16)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'; use one of decoy_mnist, decoy_fmnist, npz, folder"):
        load_config(None, {"dataset": "imagenet"})
