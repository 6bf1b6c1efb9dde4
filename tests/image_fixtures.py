"""Tiny datasets written in the exact on-disk layouts the loaders read: image folders, Oxford-IIIT
Pet, SBD, ISIC (CDEP layout), Kaggle Dogs vs. Cats. Every image is a flat colour (its class's) with
a marked rectangle, so a test can check pixels, labels and masks after resizing."""
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

#: a flat colour per class index
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (40, 200, 200), (200, 40, 200)]


def photo(colour, size=(16, 12), mark=None, mark_colour=(255, 255, 255)) -> Image.Image:
    """A ``size`` (w, h) RGB image of one colour, ``mark`` = (left, top, right, bottom) painted."""
    x = np.zeros((size[1], size[0], 3), np.uint8)
    x[:] = colour
    if mark is not None:
        l, t, r, b = mark
        x[t:b, l:r] = mark_colour
    return Image.fromarray(x)


def mask_image(size=(16, 12), mark=(0, 0, 8, 12), value=255) -> Image.Image:
    """A ``size`` mask, ``value`` inside ``mark`` (the left half by default), 0 elsewhere."""
    m = np.zeros((size[1], size[0]), np.uint8)
    l, t, r, b = mark
    m[t:b, l:r] = value
    return Image.fromarray(m)


def write_folder(root, classes=("cat", "dog"), per_class=(4, 2), masked=(0, 1), ext=".png", val=False):
    """``root/{train,test[,val]}/<class>/<class>_<k><ext>``; masks (left half) for images ``masked``
    of each class, in ``root/<split>_masks``. Returns ``root``."""
    root = Path(root)
    splits = ("train", "test", "val") if val else ("train", "test")
    for split, n in zip(splits, per_class + ((per_class[1],) if val else ())):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                photo(COLOURS[c]).save(root / split / name / f"{name}_{k}{ext}")
                if k in masked:
                    (root / f"{split}_masks" / name).mkdir(parents=True, exist_ok=True)
                    mask_image().save(root / f"{split}_masks" / name / f"{name}_{k}.png")
    return root


# -- Oxford-IIIT Pet: DIR/oxford-iiit-pet/{images,annotations/{trainval,test}.txt,annotations/trimaps} --
PET_BREEDS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2)]   # (id prefix, class id, species: 1 cat 2 dog)


def write_pets(root, per_split=2):
    """Two breeds, ``per_split`` images of each in trainval and test. Trimap: 1 pet (centre),
    2 background (left 4 columns), 3 border (everything else)."""
    base = Path(root) / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations" / "trimaps").mkdir(parents=True)
    for split, offset in (("trainval", 0), ("test", 100)):
        lines = []
        for breed, cls, species in PET_BREEDS:
            for k in range(per_split):
                image_id = f"{breed}_{offset + k}"
                photo(COLOURS[cls - 1]).save(base / "images" / f"{image_id}.jpg", quality=95)
                trimap = np.full((12, 16), 3, np.uint8)
                trimap[:, :4] = 2
                trimap[3:9, 6:12] = 1
                Image.fromarray(trimap).save(base / "annotations" / "trimaps" / f"{image_id}.png")
                lines.append(f"{image_id} {cls} {species} {k + 1}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


# -- SBD: DIR/{img/<id>.jpg, cls/<id>.mat, train.txt, val.txt} -----------------------------------------
def sbd_segmentation(objects, void_border=False):
    """12 x 16 segmentation: background 0, the k-th VOC class id of ``objects`` in columns 4k..4k+3
    of rows 2..9; with ``void_border`` a 255 ring around the first object."""
    seg = np.zeros((12, 16), np.uint8)
    for k, voc in enumerate(objects):
        seg[2:10, 4 * k:4 * k + 4] = voc
    if void_border:
        seg[1, 0:5] = 255
    return seg


def write_sbd(root, splits=None):
    """``splits``: {"train": [(id, [VOC ids], void_border)], "val": [...]}; default: train holds a dog
    (kept), a cat with a person (kept, label cat), a dog with a cat (dropped), a person alone
    (dropped), a bird with a void border (kept); val a horse and a bus."""
    root = Path(root)
    splits = splits or {"train": [("2008_000001", [12], False), ("2008_000002", [8, 15], False),
                                  ("2008_000003", [12, 8], False), ("2008_000004", [15], False),
                                  ("2008_000005", [3], True)],
                        "val": [("2008_000101", [13], False), ("2008_000102", [6], False)]}
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    for split, items in splits.items():
        for image_id, objects, void in items:
            photo(COLOURS[0]).save(root / "img" / f"{image_id}.jpg", quality=95)
            seg = sbd_segmentation(objects, void)
            boundaries = np.empty((20, 1), dtype=object)
            for c in range(20):
                boundaries[c, 0] = scipy.sparse.csc_matrix(seg == c + 1)
            scipy.io.savemat(root / "cls" / f"{image_id}.mat",
                             {"GTcls": {"Segmentation": seg, "Boundaries": boundaries,
                                        "CategoriesPresent": np.unique(seg[(seg > 0) & (seg < 255)]).astype(np.uint8)}})
        (root / f"{split}.txt").write_text("".join(f"{i}\n" for i, _, _ in items))
    return root


# -- ISIC, the CDEP layout: DIR/processed/{no_cancer,cancer}/<name>.jpg, DIR/segmentation/<name>.jpg --
def write_isic(root, benign=8, with_patch=4, malignant=4):
    """Benign images ISIC_b<k>.jpg (the first ``with_patch`` carry a red-channel patch segmentation
    of a 3 x 3 square at rows 2..4, columns 2..4), malignant ISIC_m<k>.jpg."""
    root = Path(root)
    for d in ("processed/no_cancer", "processed/cancer", "segmentation"):
        (root / d).mkdir(parents=True)
    for k in range(benign):
        photo(COLOURS[0], (40, 40), mark=(2, 2, 5, 5) if k < with_patch else None,
              mark_colour=(20, 120, 250)).save(root / "processed/no_cancer" / f"ISIC_b{k}.jpg", quality=95)
        if k < with_patch:
            seg = np.zeros((40, 40, 3), np.uint8)
            seg[2:5, 2:5, 0] = 255
            Image.fromarray(seg).save(root / "segmentation" / f"ISIC_b{k}.jpg", quality=95)
    for k in range(malignant):
        photo(COLOURS[1], (40, 40)).save(root / "processed/cancer" / f"ISIC_m{k}.jpg", quality=95)
    return root


# -- Kaggle Dogs vs. Cats: DIR/train/{cat,dog}.<n>.jpg, DIR/train_masks/<same>.png --------------------
def write_dogs_vs_cats(root, per_class=10, masked=3):
    """``per_class`` cats (colour 1) and dogs (colour 0); the first ``masked`` of each get a mask."""
    root = Path(root)
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    for animal, colour in (("dog", COLOURS[0]), ("cat", COLOURS[1])):
        for k in range(per_class):
            photo(colour).save(root / "train" / f"{animal}.{k}.jpg", quality=95)
            if k < masked:
                mask_image().save(root / "train_masks" / f"{animal}.{k}.png")
    return root
