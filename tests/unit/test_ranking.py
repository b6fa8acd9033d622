"""The Thompson-sampling ranker of decide: ties, propensities and the posterior it keeps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segue.decide.ranking import FEATURES, LinearThompson, _in_top_counts


def _features(n: int, similarity: list[float] | None = None) -> np.ndarray:
    x = np.zeros((n, len(FEATURES)))
    x[:, 0] = 1.0
    x[:, 1] = 1.0
    if similarity is not None:
        x[:, 7] = similarity
    return x


def test_equal_scores_go_to_the_earlier_candidates_in_the_choice_and_the_propensity() -> None:
    """500 candidates nobody can tell apart (a visitor nobody knows): the first k win,
    and every resample picks them too, so their propensity is 1."""
    order, scores, propensity = LinearThompson().rank(_features(500), 30, np.random.default_rng(1))
    assert order.tolist() == list(range(30))
    assert len(set(scores.tolist())) == 1
    assert propensity.tolist() == [1.0] * 30


def test_few_distinct_scores_rank_by_score_then_by_position() -> None:
    levels = [0.1, 0.3, 0.5, 0.7, 1.0]
    similarity = [levels[i % 5] for i in range(500)]
    model = LinearThompson()
    order, _, propensity = model.rank(
        _features(500, similarity), 30, np.random.default_rng(2), explore=False
    )
    # similarity has a positive prior weight: the 100 candidates at 1.0 lead, in order
    assert order.tolist() == [i for i in range(500) if similarity[i] == 1.0][:30]
    assert propensity.tolist() == [1.0] * 30


def test_propensities_are_resample_frequencies() -> None:
    rng = np.random.default_rng(3)
    x = _features(200, rng.random(200).tolist())
    x[:, 4] = rng.random(200)
    order, _, propensity = LinearThompson().rank(x, 10, np.random.default_rng(4))
    assert len(set(order.tolist())) == 10
    # (times in the top 10 of the 8 other samples + 1) / 9: multiples of 1/9 in [1/9, 1]
    assert np.allclose(propensity * 9, np.round(propensity * 9))
    assert ((propensity >= 1 / 9 - 1e-12) & (propensity <= 1 + 1e-12)).all()


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 60),
    samples=st.integers(1, 9),
    k=st.integers(1, 70),
    levels=st.integers(1, 6),
    scale=st.sampled_from([1e-3, 1.0, 40.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_counts_match_a_stable_sort_of_every_sample(
    n: int, samples: int, k: int, levels: int, scale: float, seed: int
) -> None:
    """The partition with positions as tie-breaks counts what a stable sort of each
    sample counts, on scores with many ties (few levels) and on distinct ones."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(n, samples)) * scale
    if levels == 6:  # distinct scores, with negative ones
        scores = rng.normal(0.0, scale, size=(n, samples))
    top = min(k, n)
    expected = np.zeros(n)
    for column in scores.T:
        expected[np.argsort(-column, kind="stable")[:top]] += 1
    assert _in_top_counts(scores, k).tolist() == expected.tolist()


def test_the_kept_posterior_mean_follows_updates_and_the_saved_state() -> None:
    model = LinearThompson()
    before = model.mean.copy()
    x = _features(1)[0]
    x[7] = 1.0
    model.update(x, 1.0)
    assert not np.allclose(model.mean, before)
    assert np.allclose(model.mean, model.a_inv @ model.b)
    restored = LinearThompson.from_bytes(model.to_bytes())
    assert np.allclose(restored.mean, model.mean)
