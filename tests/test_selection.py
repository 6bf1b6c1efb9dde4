"""Selection strategies against closed forms on hand-made posterior samples; select's budget,
exclusions, ties and seeds; uniformity of the random choice (chi-square)."""
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from pyro_ebnn.annotate.selection import (STRATEGIES, SelectionError, bald, explanation_disagreement,
                                          predictive_entropy, scores, select)
from pyro_ebnn.errors import EBNNError


def h(*p):
    """Entropy by hand, in nats."""
    return -sum(x * math.log(x) for x in p if x > 0)


# -- entropy and BALD ------------------------------------------------------------------------------
def test_predictive_entropy_closed_forms():
    probs = np.array([[[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.7, 0.2, 0.1, 0.0]],
                      [[0.25, 0.25, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0], [0.7, 0.2, 0.1, 0.0]]])
    np.testing.assert_allclose(predictive_entropy(probs), [math.log(4), math.log(2), h(0.7, 0.2, 0.1)])


def test_bald_closed_forms():
    identical = np.array([[[0.6, 0.3, 0.1]]] * 5)                       # 5 samples agree
    disagree = np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])          # two confident samples
    uniform = np.full((4, 1, 3), 1 / 3)
    mixed = np.array([[[0.8, 0.2]], [[0.4, 0.6]]])
    assert bald(identical)[0] == pytest.approx(0.0, abs=1e-12)
    assert bald(disagree)[0] == pytest.approx(math.log(2))
    assert predictive_entropy(disagree)[0] == pytest.approx(math.log(2))  # all of it epistemic
    assert bald(uniform)[0] == pytest.approx(0.0, abs=1e-12)
    assert predictive_entropy(uniform)[0] == pytest.approx(math.log(3))   # all of it aleatoric
    assert bald(mixed)[0] == pytest.approx(h(0.6, 0.4) - (h(0.8, 0.2) + h(0.4, 0.6)) / 2)


def test_bald_is_at_most_the_entropy():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(5, 0.5), size=(8, 50))               # S=8, N=50, K=5
    b, e = bald(probs), predictive_entropy(torch.tensor(probs))
    assert (b >= 0).all() and (b <= e + 1e-12).all() and (b > 0).all()


def test_probabilities_are_checked():
    with pytest.raises(SelectionError, match="softmax") as err:
        bald(np.array([[[2.0, -1.0]]]))                                  # logits
    assert "\n" not in str(err.value)
    with pytest.raises(SelectionError, match=r"S x N x K.*probs\[None\]"):
        predictive_entropy(np.array([[0.5, 0.5]]))


# -- the explanation score ---------------------------------------------------------------------------
def test_explanation_score_is_zero_for_identical_maps():
    rng = np.random.default_rng(1)
    one = rng.random((1, 3, 6, 5))
    assert explanation_disagreement(np.repeat(one, 4, axis=0)) == pytest.approx(np.zeros(3), abs=1e-12)


@pytest.mark.parametrize("samples", [2, 3, 7])
def test_explanation_score_is_log_s_for_disjoint_one_hot_maps(samples):
    maps = np.zeros((samples, 1, 4, 4))
    for s in range(samples):
        maps[s, 0].flat[2 * s] = 1.0 + s                               # each sample looks at its own pixel
    assert explanation_disagreement(maps)[0] == pytest.approx(math.log(samples))
    # the maximum: no S x 1 x 4 x 4 maps score higher
    rng = np.random.default_rng(samples)
    assert (explanation_disagreement(rng.random((samples, 200, 4, 4)) ** 8) < math.log(samples)).all()


def test_explanation_score_by_hand_and_invariant_to_scale_and_sign():
    maps = np.zeros((2, 1, 1, 4))
    maps[0, 0, 0] = (1.0, 1.0, 0.0, 0.0)
    maps[1, 0, 0] = (0.0, 1.0, 1.0, 0.0)                               # half the mass shared
    expected = h(0.25, 0.5, 0.25) - math.log(2)                         # = log(2) / 2
    assert explanation_disagreement(maps)[0] == pytest.approx(expected)
    assert expected == pytest.approx(math.log(2) / 2)
    scaled = maps * np.array([7.0, -0.01])[:, None, None, None]          # another size, another sign per sample
    assert explanation_disagreement(torch.tensor(scaled))[0] == pytest.approx(expected)


def test_explanation_score_of_an_all_zero_map_is_nan_and_ranked_last():
    maps = np.zeros((2, 3, 2, 2))
    maps[:, 0, 0, 0] = 1.0                                             # image 0: agreement, 0
    maps[0, 1, 0, 0], maps[1, 1, 1, 1] = 1.0, 1.0                      # image 1: disagreement, log 2
    maps[0, 2, 0, 0] = 1.0                                             # image 2: sample 1 sees nothing
    s = explanation_disagreement(maps)
    assert s[0] == pytest.approx(0.0) and s[1] == pytest.approx(math.log(2)) and np.isnan(s[2])
    np.testing.assert_array_equal(select("explanation", maps, budget=3), [1, 0, 2])


def test_explanation_score_needs_four_axes():
    with pytest.raises(SelectionError, match="over channels first"):
        explanation_disagreement(np.ones((2, 3, 1, 4, 4)))


# -- select ---------------------------------------------------------------------------------------
@pytest.fixture
def probs():
    return np.random.default_rng(2).dirichlet(np.ones(4), size=(6, 30))   # S=6, N=30, K=4


@pytest.fixture
def maps():
    return np.random.default_rng(3).random((6, 30, 5, 5)) ** 4


def test_select_takes_the_top_scores(probs, maps):
    for strategy, quantity in (("entropy", probs), ("bald", probs), ("explanation", maps)):
        s = scores(strategy, quantity)
        chosen = select(strategy, quantity, budget=5)
        np.testing.assert_array_equal(chosen, np.argsort(-s, kind="stable")[:5])
        assert (np.diff(s[chosen]) <= 0).all()                         # best first


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_select_honours_budget_and_exclude(strategy, probs, maps):
    quantity = {"explanation": maps, "shortcut": (maps[0], probs.mean(0).argmax(-1))}.get(strategy, probs)
    exclude = [0, 3, 4, 17, 29]
    full = select(strategy, quantity, budget=30, seed=5)
    assert sorted(full) == list(range(30))
    chosen = select(strategy, quantity, budget=7, exclude=exclude, seed=5)
    assert len(chosen) == 7 == len(set(chosen.tolist()))
    assert not set(chosen.tolist()) & set(exclude)
    np.testing.assert_array_equal(chosen, select(strategy, quantity, budget=7, exclude=exclude, seed=5))
    assert len(select(strategy, quantity, budget=25, exclude=exclude)) == 25   # the whole pool


def test_excluding_the_best_moves_down_the_ranking(probs):
    ranking = select("bald", probs, budget=30)
    np.testing.assert_array_equal(select("bald", probs, budget=4, exclude=ranking[:2]), ranking[2:6])


def test_ties_are_broken_by_index():
    flat = np.full((2, 6, 3), 1 / 3)                                    # every image scores the same
    np.testing.assert_array_equal(select("entropy", flat, budget=3), [0, 1, 2])
    np.testing.assert_array_equal(select("bald", flat, budget=3, exclude=[1], seed=9), [0, 2, 3])


def test_the_seed_moves_only_the_random_choice(probs):
    assert np.array_equal(select("bald", probs, budget=5, seed=0), select("bald", probs, budget=5, seed=1))
    draws = {tuple(select("random", probs, budget=5, seed=seed)) for seed in range(5)}
    assert len(draws) == 5
    np.testing.assert_array_equal(select("random", probs, budget=5, seed=3), select("random", 30, budget=5, seed=3))


@pytest.mark.parametrize("kwargs, words", [
    (dict(strategy="entropy", budget=0), "between 1 and the 30"),
    (dict(strategy="random", budget=31), "between 1 and the 30"),
    (dict(strategy="bald", budget=26, exclude=range(5)), "between 1 and the 25"),
    (dict(strategy="bald", budget=2.5), "integer"),
    (dict(strategy="bald", budget=2, exclude=[30]), "outside the pool 0..29"),
    (dict(strategy="margin", budget=2), "random, entropy, bald, explanation"),
    (dict(strategy="entropy", budget=2, quantity=30), "needs posterior samples"),
])
def test_select_refuses_bad_input_in_one_line(kwargs, words, probs):
    kwargs = {"quantity": probs, **kwargs}
    with pytest.raises(SelectionError) as err:
        select(**kwargs)
    assert isinstance(err.value, EBNNError)
    assert "\n" not in str(err.value) and words in str(err.value)


# -- the random choice is uniform ---------------------------------------------------------------------
def subset_counts(draw, n_draws):
    return Counter(tuple(sorted(draw(seed).tolist())) for seed in range(n_draws))


def uniformity_p_value(counts, subsets):
    return stats.chisquare([counts.get(s, 0) for s in subsets]).pvalue


def test_random_choice_is_uniform_over_subsets():
    """N = 7 with image 3 excluded, budget 2: each of the C(6, 2) = 15 pairs has probability 1/15.
    3000 seeded draws (fixed seeds, so the test is stable); a sampler that favours one image by 30%
    fails the same test."""
    pool = [0, 1, 2, 4, 5, 6]
    pairs = list(itertools.combinations(pool, 2))
    counts = subset_counts(lambda seed: select("random", 7, budget=2, exclude=[3], seed=seed), 3000)
    assert set(counts) == set(pairs)
    assert uniformity_p_value(counts, pairs) > 1e-3

    weights = np.array([1.3, 1, 1, 1, 1, 1]) / 6.3
    biased = subset_counts(
        lambda seed: np.random.default_rng(seed).choice(pool, size=2, replace=False, p=weights), 3000)
    assert uniformity_p_value(biased, pairs) < 1e-3


def test_random_choice_covers_each_image_equally():
    """Marginals: budget 3 of N = 10 over 2000 seeds; each image is expected 600 times."""
    counts = np.bincount(np.concatenate([select("random", 10, budget=3, seed=s) for s in range(2000)]), minlength=10)
    assert counts.sum() == 6000
    assert stats.chisquare(counts).pvalue > 1e-3
