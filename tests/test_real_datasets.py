"""Oxford-IIIT Pet, SBD, ISIC and Dogs vs. Cats from fixtures in their real on-disk layouts (torchvision's
own loaders read the Pets and SBD fixtures): classes, labels, masks, splits, configs, and the one
line that names what is missing where."""
import pickle

import numpy as np
import pytest
import torch
import yaml

from pyro_ebnn.data import load_dataset
from pyro_ebnn.data.real import SBD_CLASSES, split_off_test
from pyro_ebnn.errors import DataError
from pyro_ebnn.experiment.config import load_config
from pyro_ebnn.experiment.protocol import prepare_split

from image_fixtures import COLOURS, write_dogs_vs_cats, write_isic, write_pets, write_sbd


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_EBNN_CACHE", str(tmp_path / "cache"))


def _cfg(name, root, **kw):
    tiny = {"architecture": "lenet", "batch_norm": False}   # tiny images: AlexNet needs >= 31 px
    return load_config(f"configs/{name}.yaml", {"data_dir": str(root), "image_size": 16, "pretrained": False, **tiny,
                                                **kw})


def _left_columns(mask, n):
    """Whether exactly the ``n`` leftmost columns of a 1 x H x W mask are set."""
    expected = torch.zeros_like(mask)
    expected[..., :n] = True
    return torch.equal(mask, expected)


def test_oxford_pets_through_torchvision_with_the_trimap_background_as_mask(tmp_path):
    root = write_pets(tmp_path / "pets")
    trainval, sets = load_dataset(_cfg("oxford_pets", root))
    assert trainval.class_names == ["Abyssinian", "American Bulldog"] == sets["test"].class_names
    assert trainval.labels.tolist() == [0, 0, 1, 1] and sets["test"].labels.tolist() == [0, 0, 1, 1]
    assert trainval.has_mask.all()
    x, y, m = sets["test"][2]
    assert y == 1 and x.shape == (3, 16, 16)
    assert torch.allclose(x[:, 8, 8], torch.tensor(COLOURS[1], dtype=torch.float32) / 255, atol=0.03)
    # trimap 2 (background) = the left 4 of 16 columns -> 4 of 16 after resizing; 1 (pet) and 3 (border) are not
    assert _left_columns(m, 4)
    assert len(pickle.dumps(trainval)) < 20000


def test_sbd_through_torchvision_keeps_images_with_exactly_one_of_the_five_classes(tmp_path):
    root = write_sbd(tmp_path / "sbd")
    trainval, sets = load_dataset(_cfg("sbd", root))
    names = list(SBD_CLASSES)
    assert trainval.class_names == ["bird", "bus", "cat", "dog", "horse"]
    # kept: a dog; a cat with a person; a bird. Dropped: a dog with a cat; a person alone
    assert [names[y] for y in trainval.labels] == ["dog", "cat", "bird"]
    assert [names[y] for y in sets["test"].labels] == ["horse", "bus"]
    assert [trainval.source(k).split("/")[-1] for k in range(3)] == [
        "2008_000001.mat)", "2008_000002.mat)", "2008_000005.mat)"]
    _, y, m = trainval[1]                                # the cat (columns 0..3) next to a person (4..7)
    assert names[y] == "cat"
    assert not m[:, 3:13, 0:4].any()                    # the cat is not masked (rows scaled 12 -> 16)
    assert m[:, 3:13, 4:8].all() and m[:, 0].all()       # the person and the background are
    _, _, m = trainval[2]                                # the bird, with a 255 border at row 1, columns 0..4
    assert not m[:, 1, 0:5].any() and m[:, 0, 0:5].all()


def test_sbd_selection_is_cached_and_reused(tmp_path, monkeypatch):
    root = write_sbd(tmp_path / "sbd")
    load_dataset(_cfg("sbd", root))
    assert len(list((tmp_path / "cache").glob("sbd-*.json"))) == 2     # train and val
    monkeypatch.setattr("pyro_ebnn.data.real._segmentation", lambda path: 1 / 0)
    trainval, _ = load_dataset(_cfg("sbd", root))                         # no .mat is scanned again
    assert len(trainval) == 3


def test_isic_in_the_cdep_layout_with_patch_masks_and_a_test_set_without_patches(tmp_path):
    root = write_isic(tmp_path / "isic", benign=8, with_patch=4, malignant=4)
    cfg = _cfg("isic", root, image_size=40, test_fraction=0.5)
    trainval, sets = load_dataset(cfg)
    assert trainval.class_names == ["benign", "malignant"] and cfg.class_weights == [1.0, 8.4433]
    test, clean = sets["test"], sets["test_no_patches"]
    assert len(trainval) == len(test) == 6 and sorted(sets) == ["test", "test_no_patches"]
    everything = torch.cat([trainval.labels, test.labels])
    assert everything.tolist().count(0) == 8 and everything.tolist().count(1) == 4
    assert int(trainval.has_mask.sum() + test.has_mask.sum()) == 4
    assert len(clean) == len(test) - int(test.has_mask.sum()) and not clean.has_mask.any()
    assert all(test.source(k) != clean.source(j) for k in range(len(test)) if test.has_mask[k]
               for j in range(len(clean)))
    k = int(trainval.has_mask.nonzero()[0])
    x, y, m = trainval[k]
    assert y == 0
    # the 3 x 3 patch at rows/columns 2..4, dilated by CDEP's 20 x 20 square: rows/columns 0..13
    expected = torch.zeros(1, 40, 40, dtype=torch.bool)
    expected[:, :14, :14] = True
    assert torch.equal(m, expected)
    assert x[2, 3, 3] > 0.6 > x[2, 30, 30]              # the blue patch is in the image (JPEG blurs it)


def test_isic_reports_the_test_set_with_and_without_patches_through_prepare_split(tmp_path):
    root = write_isic(tmp_path / "isic", benign=8, with_patch=4, malignant=4)
    split = prepare_split(_cfg("isic", root, image_size=40, test_fraction=0.5))
    assert list(split.extra_tests) == ["test_no_patches", "marked_noise", "marked_swap"]  # and the shortcut report's
    assert len(split.train) + len(split.val) == 6


def test_dogs_vs_cats_kaggle_names_give_the_labels_and_a_seeded_stratified_test_set(tmp_path):
    root = write_dogs_vs_cats(tmp_path / "dvc", per_class=10, masked=3)
    trainval, sets = load_dataset(_cfg("dogs_vs_cats", root, test_fraction=0.2))
    test = sets["test"]
    assert trainval.class_names == ["dog", "cat"]                       # [001]: dogs 0, cats 1
    assert len(test) == 4 and test.labels.tolist().count(1) == 2        # stratified
    for images in (trainval, test):
        for k in range(len(images)):
            name = images.source(k).split(" ")[0].split("/")[-1]
            assert images.labels[k] == ("cat" in name)
            assert bool(images.has_mask[k]) == (int(name.split(".")[1]) < 3)
    x, y, m = trainval[0]
    assert _left_columns(m, 8)                                           # the left half
    again, _ = load_dataset(_cfg("dogs_vs_cats", root, test_fraction=0.2))
    other, _ = load_dataset(_cfg("dogs_vs_cats", root, test_fraction=0.2, data_seed=1))
    sources = lambda s: [s.source(k) for k in range(len(s))]
    assert sources(again) == sources(trainval) and sources(other) != sources(trainval)


def test_split_off_test_is_stratified_seeded_and_sorted():
    labels = np.array([0] * 30 + [1] * 10)
    tv, te = split_off_test(labels, 0.1, seed=3)
    assert len(te) == 4 and labels[te].tolist().count(1) == 1 and list(te) == sorted(te)
    assert set(tv) | set(te) == set(range(40)) and not set(tv) & set(te)
    assert np.array_equal(split_off_test(labels, 0.1, seed=3)[1], te)
    with pytest.raises(DataError, match="cannot cut a test set of 0.01 from 40 images"):
        split_off_test(labels, 0.01, seed=0)


@pytest.mark.parametrize("name,expected,source", [
    ("oxford_pets", r"oxford-iiit-pet/images/<id>\.jpg, .*annotations/trainval\.txt", r"robots\.ox\.ac\.uk.*download: true"),
    ("sbd", r"img/<id>\.jpg, .*cls/<id>\.mat, .*train\.txt", r"SBD/download\.html.*download: true"),
    ("isic", r"processed/no_cancer/<name>\.jpg, .*processed/cancer/<name>\.jpg, .*segmentation/",
     r"deep-explanation-penalization"),
    ("dogs_vs_cats", r"train/cat\.<n>\.jpg, .*train/dog\.<n>\.jpg", r"kaggle\.com/c/dogs-vs-cats"),
])
def test_missing_files_give_one_line_with_what_is_expected_where_and_where_it_comes_from(tmp_path, name, expected,
                                                                                        source):
    with pytest.raises(DataError, match=f"{name} not found under {tmp_path}: expected .*{expected}.*get it from.*{source}") \
            as e:
        load_dataset(_cfg(name, tmp_path))
    assert "\n" not in str(e.value)


def test_stray_files_in_the_real_layouts_are_named(tmp_path):
    root = write_dogs_vs_cats(tmp_path / "dvc", per_class=2, masked=1)
    (root / "train_masks" / "cat.99.png").write_bytes((root / "train_masks" / "cat.0.png").read_bytes())
    with pytest.raises(DataError, match=r"cat\.99\.png: a mask without an image"):
        load_dataset(_cfg("dogs_vs_cats", root))
    (root / "train_masks" / "cat.99.png").unlink()
    (root / "train" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt: not a Kaggle Dogs vs\. Cats training image"):
        load_dataset(_cfg("dogs_vs_cats", root))
    root = write_isic(tmp_path / "isic", benign=4, with_patch=1, malignant=2)
    (root / "segmentation" / "ISIC_x.jpg").write_bytes((root / "segmentation" / "ISIC_b0.jpg").read_bytes())
    with pytest.raises(DataError, match=r"ISIC_x\.jpg: a patch segmentation without a benign image"):
        load_dataset(_cfg("isic", root))


def test_the_configs_carry_the_published_hyperparameters():
    """The published hyperparameters (the reference code of [000], docs/method.md); [001] for Dogs vs. Cats."""
    published = {"isic": (1e-4, -3.8, 1e-5, 60, 0.98, "max"), "oxford_pets": (1e-4, -4.2, 2e-6, 100, 0.98, "min"),
                 "sbd": (1e-4, -3.8, 2e-6, 100, 0.98, "min")}
    for name, (lr, rho, lam, epochs, decay, pool) in published.items():
        cfg = load_config(f"configs/{name}.yaml")
        assert (cfg.lr, cfg.rho_init, cfg.lam, cfg.epochs, cfg.lr_decay, cfg.mask_pool) == (lr, rho, lam, epochs, decay,
                                                                                           pool), name
        assert (cfg.batch_size, cfg.prior_scale, cfg.architecture, cfg.image_size, cfg.pretrained, cfg.normalize) == \
            (128, 0.1, "alexnet", 224, True, "imagenet"), name
    dvc = load_config("configs/dogs_vs_cats.yaml")
    assert (dvc.batch_norm, dvc.lr, dvc.batch_size, dvc.finetune_lam, dvc.select_metric) == (True, 1e-3, 256, 1.0,
                                                                                             "f1_macro")
    assert yaml.safe_load(open("configs/isic.yaml"))["class_weights"][1] == pytest.approx(11618 / 1376, abs=1e-4)


def test_download_true_leaves_files_that_are_there_alone(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although the files are there")
    monkeypatch.setattr("torchvision.datasets.sbd.download_and_extract_archive", no_download)
    monkeypatch.setattr("torchvision.datasets.oxford_iiit_pet.download_and_extract_archive", no_download)
    assert len(load_dataset(_cfg("sbd", write_sbd(tmp_path / "sbd"), download=True))[0]) == 3
    assert len(load_dataset(_cfg("oxford_pets", write_pets(tmp_path / "pets"), download=True))[0]) == 4
