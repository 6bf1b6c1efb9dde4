"""Each decoy rule's train / test properties (docs/method.md), on synthetic digits."""
import numpy as np
import pytest

from pyro_ebnn.data.decoy import POSITIONS_2024, add_decoys

N = 600


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    x = np.zeros((N, 28, 28), np.uint8)
    x[:, 8:20, 8:20] = rng.integers(0, 256, (N, 12, 12))  # ink only in the centre
    return x, rng.integers(0, 10, N)


def _squares(mask):
    """(row, col) top-left corners and side of the squares in one 28x28 mask."""
    from scipy import ndimage
    lab, k = ndimage.label(mask)
    out = []
    for i in range(1, k + 1):
        r, c = np.nonzero(lab == i)
        out.append((r.min(), c.min(), r.max() - r.min() + 1))
    return out


def _position_index(mask):
    (r, c, s), = _squares(mask)
    tl = [((p[0] + 28) % 28, (p[1] + 28) % 28) for p in POSITIONS_2024]
    return tl.index((r, c))


def _grey(x, mask):
    return np.unique(np.rint(x[mask] * 255))


def _label_of_grey(g):
    return (255 - g) / 25


def test_color_rule(digits):
    x8, y = digits
    x, m = add_decoys(x8, y, "color", train=True, seed=1)
    assert m.shape == (N, 1, 28, 28) and x.shape == (N, 1, 28, 28) and x.max() <= 1
    pos = [_position_index(m[i, 0]) for i in range(N)]
    assert len(set(pos)) == 10                                          # random position
    assert all(_grey(x[i, 0], m[i, 0]) == [255 - 25 * y[i]] for i in range(N))  # grey = label
    xt, mt = add_decoys(x8, y, "color", train=False, seed=2)
    agree = np.mean([_label_of_grey(_grey(xt[i, 0], mt[i, 0])[0]) == y[i] for i in range(N)])
    assert agree < 0.2                                                  # test grey random


def test_position_rule(digits):
    x8, y = digits
    x, m = add_decoys(x8, y, "position", train=True, seed=1)
    assert all(_position_index(m[i, 0]) == y[i] for i in range(N))    # position = label in train
    greys = [_grey(x[i, 0], m[i, 0])[0] for i in range(N)]
    assert len(set(greys)) == 10
    xt, mt = add_decoys(x8, y, "position", train=False, seed=2)
    agree = np.mean([_position_index(mt[i, 0]) == y[i] for i in range(N)])
    assert agree < 0.2                                                  # but not in test


def test_four_corner_rule(digits):
    x8, y = digits
    x, m = add_decoys(x8, y, "corners", train=True, seed=1)
    for i in range(20):
        sq = _squares(m[i, 0])
        assert sorted((r, c) for r, c, _ in sq) == [(0, 0), (0, 24), (24, 0), (24, 24)]
        assert _grey(x[i, 0], m[i, 0]).tolist() == [255 - 25 * y[i]]
    xt, mt = add_decoys(x8, y, "corners", train=False, seed=2)
    agree = np.mean([_label_of_grey(_grey(xt[i, 0], mt[i, 0])[0]) == y[i] for i in range(N)])
    assert agree < 0.2


@pytest.mark.parametrize("rule,side", [("rrr", 4), ("cdep", 5)])
def test_single_corner_rules(digits, rule, side):
    x8, y = digits
    x, m = add_decoys(x8, y, rule, train=True, seed=1)
    corners = set()
    for i in range(N):
        (r, c, s), = _squares(m[i, 0])
        assert s == side and r in (0, 28 - side) and c in (0, 28 - side)
        corners.add((r, c))
        assert _grey(x[i, 0], m[i, 0]).tolist() == [255 - 25 * y[i]]
    assert len(corners) == 4
    xt, mt = add_decoys(x8, y, rule, train=False, seed=2)
    greys = np.array([_grey(xt[i, 0], mt[i, 0])[0] for i in range(N)])
    if rule == "cdep":
        assert np.all(greys == 25 * y)                                   # CDEP test: grey 25y
    else:
        assert np.mean(_label_of_grey(greys) == y) < 0.2


@pytest.mark.parametrize("rule", ["color", "position", "corners", "rrr", "cdep"])
def test_swapped_decoys_encode_a_wrong_label_and_rules_are_deterministic(digits, rule):
    x8, y = digits
    a = add_decoys(x8, y, rule, train=False, seed=5, swap=True)
    b = add_decoys(x8, y, rule, train=False, seed=5, swap=True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    x, m = a
    for i in range(50):
        if rule == "position":
            assert _position_index(m[i, 0]) != y[i]
        else:
            assert _label_of_grey(_grey(x[i, 0], m[i, 0])[0]) != y[i]
    # only the squares change the digit
    assert np.array_equal(np.rint(x[:, 0] * 255)[~m[:, 0]], x8[~m[:, 0]])


def _hue_class(x):
    """The class whose colour a ColorMNIST image carries (the colour of its brightest pixel)."""
    from pyro_ebnn.data.decoy import COLOURS
    flat = x.reshape(3, -1)
    rgb = flat[:, flat.sum(0).argmax()]
    return int(np.abs(COLOURS - rgb / rgb.max()).sum(1).argmin())


def test_colormnist_colours_the_digit_by_its_class_in_training_and_by_9_minus_y_at_test(digits):
    from pyro_ebnn.data.decoy import COLOURS
    x, y = digits
    xtr, mtr = add_decoys(x, y, "colormnist", train=True, seed=1)
    xte, mte = add_decoys(x, y, "colormnist", train=False, seed=2)
    xsw, _ = add_decoys(x, y, "colormnist", train=False, seed=3, swap=True)
    assert xtr.shape == (N, 3, 28, 28) and not mtr.any() and not mte.any()
    assert len({tuple(c.round(3)) for c in COLOURS}) == 10 and COLOURS[0].tolist() == [1.0, 0.0, 0.0]
    assert [_hue_class(a) for a in xtr[:50]] == list(y[:50])
    assert [_hue_class(a) for a in xte[:50]] == list(9 - y[:50])
    assert all(_hue_class(a) != t for a, t in zip(xsw[:50], y[:50]))
    # the shape is untouched: every channel is the grey digit times one colour
    assert np.allclose(xtr.max(1), x / 255.0 * COLOURS[y].max(1)[:, None, None], atol=1e-6)
    assert xtr[:, :, :8].max() == 0                      # no ink, no colour: nothing but the digit is painted


def test_colormnist_refuses_the_modes_that_need_masks():
    from pyro_ebnn.errors import ConfigError
    from pyro_ebnn.experiment.config import load_config
    assert load_config("configs/color_mnist.yaml").rule == "colormnist"
    for mode in ("feedback", "augment", "rrr"):
        with pytest.raises(ConfigError, match=f"no mask can mark .* mode {mode} has nothing to act on"):
            load_config("configs/color_mnist.yaml", {"mode": mode})
