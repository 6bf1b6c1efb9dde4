"""The real-world datasets of [000] and [001], read from their own layouts on disk (``data_dir: DIR``).

* ``oxford_pets``, through torchvision's ``OxfordIIITPet``: ``DIR/oxford-iiit-pet/images/<id>.jpg``,
  ``DIR/oxford-iiit-pet/annotations/{trainval,test}.txt``, ``.../annotations/trimaps/<id>.png``.
  37 breeds; mask = the trimap's background (value 2).
* ``sbd``, through torchvision's ``SBDataset`` (mode "segmentation"): ``DIR/img/<id>.jpg``,
  ``DIR/cls/<id>.mat``, ``DIR/train.txt``, ``DIR/val.txt``. Bird, bus, cat, dog, horse; mask = all
  but the object.
* ``isic``, the layout of the CDEP code (Rieger et al. 2020, ``isic-skin-cancer/ISIC``):
  ``DIR/processed/no_cancer/<name>.jpg`` (benign, with and without patches),
  ``DIR/processed/cancer/<name>.jpg`` (malignant), ``DIR/segmentation/<name>.jpg`` (the patch of
  the benign image ``<name>``, for those that carry one). Benign 0, malignant 1; mask = the patch.
* ``dogs_vs_cats``, Kaggle's: ``DIR/train/{cat,dog}.<n>.jpg``, masks ``DIR/train_masks/<same>.png``
  (non-zero = irrelevant, e.g. the non-animal pixels). Dog 0, cat 1 ([001] Sec. 4.2).

Splits. ``oxford_pets``: train+val = torchvision's "trainval", test = its "test". ``sbd``: train+val =
SBD's ``train.txt``, test = its ``val.txt``, each restricted to the images whose segmentation holds
exactly one of the five classes (other VOC classes, e.g. a person, may be present). ``isic`` and
``dogs_vs_cats`` have no labelled test split: :func:`split_off_test` cuts ``test_fraction`` of the
images per class at random (seeded by ``data_seed``). ``isic`` also yields ``test_no_patches``: the
test images without a patch segmentation.

Masks. Pets: trimap value 2 (background); the "not classified" border (3) is no opinion. SBD:
every pixel that is neither the object's class nor 255 (VOC's "void" border, when present: no
opinion). ISIC: as CDEP reads its segmentations, red channel > 100, dilated by a 20 x 20 square.
Pets and SBD masks cover most of the image: use ``mask_pool: min``.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.io
from scipy import ndimage
from sklearn.model_selection import train_test_split

from ..errors import DataError
from .folders import IMAGE_EXTENSIONS, FileReader, binary_mask, open_image
from .mnist import cache_dir
from .streamed import DiskImages, read_header

if TYPE_CHECKING:  # imported where used: importing torchvision takes 2 s, which every command would pay
    from torchvision.datasets import OxfordIIITPet, SBDataset

__all__ = ["SOURCES", "PETS_BACKGROUND", "SBD_CLASSES", "VOID", "PATCH_DILATION", "PetsReader", "SBDReader",
           "split_off_test", "patch_mask", "load_oxford_pets", "load_sbd", "load_isic", "load_dogs_vs_cats"]

#: where each dataset comes from (named in the error when its files are missing)
SOURCES = {
    "oxford_pets": "Oxford-IIIT Pet (Parkhi et al. 2012): images.tar.gz and annotations.tar.gz from "
                   "https://www.robots.ox.ac.uk/~vgg/data/pets/ unpacked into DIR/oxford-iiit-pet/, or set download: true",
    "sbd": "SBD (Hariharan et al. 2011): benchmark.tgz from "
           "http://home.bharathh.info/pubs/codes/SBD/download.html, the contents of benchmark_RELEASE/dataset/ "
           "moved into DIR, or set download: true",
    "isic": "the ISIC images sorted by the CDEP code of Rieger et al. 2020 "
            "(github.com/laura-rieger/deep-explanation-penalization, isic-skin-cancer/ISIC: 01_download_imgs.py, "
            "02_sort_imgs.py) and its patch segmentations",
    "dogs_vs_cats": "Kaggle Dogs vs. Cats (2014), train.zip from https://www.kaggle.com/c/dogs-vs-cats, with masks "
                    "of the non-animal pixels from a segmentation network ([001] used DeepLabV3-ResNet101)",
}
PETS_BACKGROUND = 2                       # trimap: 1 pet, 2 background, 3 not classified
SBD_CLASSES = {"bird": 3, "bus": 6, "cat": 8, "dog": 12, "horse": 13}   # PASCAL VOC class ids
VOID = 255
PATCH_DILATION = 20                       # CDEP dilates its patch segmentations by a 20 x 20 square
DOGS_VS_CATS = ("dog", "cat")             # [001] Sec. 4.2: dogs label 0, cats label 1
_KAGGLE_NAME = re.compile(r"^(cat|dog)\.(\d+)\.jpe?g$", re.IGNORECASE)


def _missing(dataset: str, root, expected: list) -> DataError:
    return DataError(f"{dataset} not found under {root}: expected {', '.join(str(e) for e in expected)}; "
                     f"get it from {SOURCES[dataset]}")


def split_off_test(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(trainval, test)`` positions: ``fraction`` of the images of each class go to the test set,
    drawn at random by scikit-learn's stratified ``train_test_split`` with ``random_state=seed``;
    both sorted.

    >>> tv, te = split_off_test([0] * 8 + [1] * 12, 0.25, seed=0)
    >>> len(te), sorted(set(np.asarray([0] * 8 + [1] * 12)[te].tolist()))
    (5, [0, 1])
    """
    labels = np.asarray(labels)
    try:
        trainval, test = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels,
                                          random_state=seed)
    except ValueError as e:
        raise DataError(f"cannot cut a test set of {fraction:g} from {len(labels)} images stratified by class ({e}); "
                        "change test_fraction")
    return np.sort(trainval), np.sort(test)


# -- Oxford-IIIT Pet ---------------------------------------------------------------------------------
class PetsReader:
    """Image ``i`` of torchvision's ``OxfordIIITPet`` and its trimap's background as the mask."""

    def __init__(self, dataset: OxfordIIITPet):
        self.dataset = dataset

    def read(self, i: int):
        image, (_, trimap) = self.dataset[i]
        return image, np.asarray(trimap) == PETS_BACKGROUND

    def source(self, i: int) -> str:
        return f"{self.dataset._images[i]} (trimap {self.dataset._segs[i]})"


def _pets(root: Path, split: str, download: bool) -> OxfordIIITPet:
    base = root / "oxford-iiit-pet"
    expected = [base / "images" / "<id>.jpg", base / "annotations" / f"{split}.txt",
                base / "annotations" / "trimaps" / "<id>.png"]
    if not download and not all(p.exists() for p in (base / "images", base / "annotations" / f"{split}.txt",
                                                      base / "annotations" / "trimaps")):
        raise _missing("oxford_pets", root, expected)
    from torchvision.datasets import OxfordIIITPet
    try:
        return OxfordIIITPet(str(root), split=split, target_types=("category", "segmentation"), download=download)
    except (RuntimeError, OSError) as e:
        raise DataError(f"oxford_pets: torchvision could not {'download' if download else 'read'} it into {base} "
                        f"({type(e).__name__}: {e}); get it from {SOURCES['oxford_pets']}")


def _pets_images(ds: OxfordIIITPet, size: int, channels: int, name: str) -> DiskImages:
    images, trimaps, labels = ds._images, ds._segs, ds._labels   # torchvision's file lists
    for image, trimap in zip(images, trimaps):
        if not trimap.exists():
            raise DataError(f"{trimap}: the trimap of {image} is missing; restore annotations/trimaps/ from "
                            f"{SOURCES['oxford_pets']}")
    FileReader(images, trimaps).check_headers()
    return DiskImages(PetsReader(ds), labels, np.ones(len(labels), bool), ds.classes, size, channels, name)


def load_oxford_pets(root, size: int, channels: int = 3, download: bool = False):
    """``(trainval, {"test": ...})`` of Oxford-IIIT Pet through torchvision (37 classes)."""
    root = Path(root)
    trainval = _pets_images(_pets(root, "trainval", download), size, channels, "oxford_pets:trainval")
    test = _pets_images(_pets(root, "test", download), size, channels, "oxford_pets:test")
    if test.class_names != trainval.class_names:
        raise DataError(f"{root / 'oxford-iiit-pet' / 'annotations'}: trainval.txt and test.txt name different breeds; "
                        f"restore the annotations from {SOURCES['oxford_pets']}")
    return trainval, {"test": test}


# -- SBD ---------------------------------------------------------------------------------------------
class SBDReader:
    """Image ``i`` of torchvision's ``SBDataset`` (mode "segmentation"); the mask is every pixel
    that is neither the object's class ``objects[i]`` nor :data:`VOID`."""

    def __init__(self, dataset: SBDataset, objects):
        self.dataset, self.objects = dataset, np.asarray(objects)

    def read(self, i: int):
        image, segmentation = self.dataset[i]
        seg = np.asarray(segmentation)
        return image, (seg != self.objects[i]) & (seg != VOID)

    def source(self, i: int) -> str:
        return f"{self.dataset.images[i]} (segmentation {self.dataset.masks[i]})"


def _segmentation(path) -> np.ndarray:
    """The class segmentation of an SBD ``cls/<id>.mat`` file (``GTcls.Segmentation``)."""
    try:
        return np.asarray(scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        raise DataError(f"{path}: not an SBD class segmentation (.mat with GTcls.Segmentation): "
                        f"{type(e).__name__}: {e}; restore it from {SOURCES['sbd']}")


def _single_objects(ds: SBDataset, split_file: Path) -> list:
    """The VOC class id of the one selected class in each image's segmentation, 0 when the image
    holds none or several of :data:`SBD_CLASSES`. Cached (per data folder and split file) in the
    user cache, since it reads every segmentation; delete ``sbd-*.json`` there after editing SBD."""
    key = hashlib.sha1((str(split_file.resolve()) + "\n").encode() + split_file.read_bytes()).hexdigest()[:16]
    cache = cache_dir() / f"sbd-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    wanted = np.array(sorted(SBD_CLASSES.values()))
    objects = []
    for image, mat in zip(ds.images, ds.masks):
        if not Path(mat).exists():
            raise DataError(f"{mat}: the segmentation of {image} is missing; restore cls/ from {SOURCES['sbd']}")
        seg = _segmentation(mat)
        width, height = read_header(image)
        if seg.shape != (height, width):
            raise DataError(f"{mat}: the segmentation is {seg.shape[1]} x {seg.shape[0]} pixels but its image {image} "
                            f"is {width} x {height}; restore both from {SOURCES['sbd']}")
        present = np.intersect1d(np.unique(seg), wanted)
        objects.append(int(present[0]) if len(present) == 1 else 0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(objects))
    return objects


def _sbd_split(root: Path, image_set: str, download: bool, size: int, channels: int) -> DiskImages:
    expected = [root / "img" / "<id>.jpg", root / "cls" / "<id>.mat", root / f"{image_set}.txt"]
    present = all(p.exists() for p in (root / "img", root / "cls", root / f"{image_set}.txt"))
    if not download and not present:
        raise _missing("sbd", root, expected)
    download = download and not present   # torchvision would fetch and unpack it again, and fail moving it
    from torchvision.datasets import SBDataset
    try:
        ds = SBDataset(str(root), image_set=image_set, mode="segmentation", download=download)
    except (RuntimeError, OSError) as e:
        raise DataError(f"sbd: torchvision could not {'download' if download else 'read'} it into {root} "
                        f"({type(e).__name__}: {e}); get it from {SOURCES['sbd']}")
    objects = np.asarray(_single_objects(ds, root / f"{image_set}.txt"))
    keep = np.flatnonzero(objects > 0)
    class_of = {voc: k for k, voc in enumerate(SBD_CLASSES.values())}
    labels = np.array([class_of.get(int(o), -1) for o in objects])
    return DiskImages(SBDReader(ds, objects), labels, objects > 0, list(SBD_CLASSES), size, channels,
                      f"sbd:{image_set}", positions=keep)


def load_sbd(root, size: int, channels: int = 3, download: bool = False):
    """``(trainval, {"test": ...})`` of SBD through torchvision: train+val from ``train.txt``, test
    from ``val.txt``, images holding exactly one of bird, bus, cat, dog, horse (5 classes)."""
    root = Path(root)
    return _sbd_split(root, "train", download, size, channels), {"test": _sbd_split(root, "val", download, size, channels)}


# -- ISIC (the CDEP layout) ----------------------------------------------------------------------------
def patch_mask(path) -> np.ndarray:
    """A CDEP patch segmentation as a mask: red channel > 100, dilated by a 20 x 20 square."""
    red = np.asarray(open_image(path, "patch segmentation").convert("RGB"))[..., 0]
    return ndimage.binary_dilation(red > 100, structure=np.ones((PATCH_DILATION, PATCH_DILATION), bool))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def load_isic(root, size: int, channels: int = 3, test_fraction: float = 0.1, seed: int = 0):
    """``(trainval, {"test": ..., "test_no_patches": ...})`` of ISIC in the CDEP layout (benign 0,
    malignant 1; masks = the patches of the benign images that carry one)."""
    root = Path(root)
    benign_dir, malignant_dir, seg_dir = root / "processed" / "no_cancer", root / "processed" / "cancer", root / "segmentation"
    if not (benign_dir.is_dir() and malignant_dir.is_dir()):
        raise _missing("isic", root, [benign_dir / "<name>.jpg", malignant_dir / "<name>.jpg",
                                      seg_dir / "<name of a benign image>.jpg"])
    benign, malignant = _image_files(benign_dir), _image_files(malignant_dir)
    for folder, files in ((benign_dir, benign), (malignant_dir, malignant)):
        if not files:
            raise DataError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); get them from {SOURCES['isic']}")
    by_stem = {p.stem: p for p in benign}
    segmentations = {}
    for seg in _image_files(seg_dir) if seg_dir.is_dir() else []:
        if seg.stem not in by_stem:
            raise DataError(f"{seg}: a patch segmentation without a benign image (expected {benign_dir / seg.name}); "
                            "add the image or delete the segmentation")
        segmentations[seg.stem] = str(seg)
    images = [str(p) for p in benign + malignant]
    masks = [segmentations.get(p.stem) for p in benign] + [None] * len(malignant)
    labels = np.array([0] * len(benign) + [1] * len(malignant))
    reader = FileReader(images, masks, patch_mask)
    reader.check_headers()
    everything = DiskImages(reader, labels, [m is not None for m in masks], ["benign", "malignant"], size, channels,
                            "isic")
    trainval_idx, test_idx = split_off_test(labels, test_fraction, seed)
    test = everything.subset(test_idx).renamed("isic:test")
    no_patches = test.subset(np.flatnonzero(~test.has_mask.numpy())).renamed("isic:test_no_patches")
    return everything.subset(trainval_idx).renamed("isic:trainval"), {"test": test, "test_no_patches": no_patches}


# -- Dogs vs. Cats (Kaggle) -------------------------------------------------------------------------
def _kaggle_key(path: Path):
    animal, number = _KAGGLE_NAME.match(path.name).groups()
    return DOGS_VS_CATS.index(animal.lower()), int(number)


def load_dogs_vs_cats(root, size: int, channels: int = 3, test_fraction: float = 0.05, seed: int = 0):
    """``(trainval, {"test": ...})`` of Kaggle's labelled ``train/`` folder (dog 0, cat 1), masks from
    ``train_masks/`` (same names, PNG); the test set is cut by :func:`split_off_test`."""
    root = Path(root)
    train_dir, mask_dir = root / "train", root / "train_masks"
    if not train_dir.is_dir():
        raise _missing("dogs_vs_cats", root, [train_dir / "cat.<n>.jpg", train_dir / "dog.<n>.jpg",
                                              mask_dir / "cat.<n>.png (optional)"])
    files = [p for p in train_dir.iterdir() if not p.name.startswith(".")]
    for p in files:
        if not _KAGGLE_NAME.match(p.name):
            raise DataError(f"{p}: not a Kaggle Dogs vs. Cats training image (cat.<n>.jpg or dog.<n>.jpg); "
                            "move it out of train/")
    if not files:
        raise _missing("dogs_vs_cats", root, [train_dir / "cat.<n>.jpg", train_dir / "dog.<n>.jpg"])
    files.sort(key=_kaggle_key)
    stems = {p.stem for p in files}
    masks_found = {}
    for m in (p for p in mask_dir.iterdir() if not p.name.startswith(".")) if mask_dir.is_dir() else ():
        if m.suffix.lower() != ".png" or m.stem not in stems:
            raise DataError(f"{m}: a mask without an image (masks are {mask_dir}/<image name>.png for an image "
                            f"{train_dir}/<image name>.jpg); add the image or delete the mask")
        masks_found[m.stem] = str(m)
    masks = [masks_found.get(p.stem) for p in files]
    labels = np.array([_kaggle_key(p)[0] for p in files])
    reader = FileReader([str(p) for p in files], masks, binary_mask)
    reader.check_headers()
    everything = DiskImages(reader, labels, [m is not None for m in masks], list(DOGS_VS_CATS), size, channels,
                            "dogs_vs_cats")
    trainval_idx, test_idx = split_off_test(labels, test_fraction, seed)
    return (everything.subset(trainval_idx).renamed("dogs_vs_cats:trainval"),
            {"test": everything.subset(test_idx).renamed("dogs_vs_cats:test")})
