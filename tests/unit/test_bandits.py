"""The featurizer and the contextual bandit: hashing, exact updates, honest probabilities."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import numpy as np
import pytest

from segue.decide.bandits import Featurizer, LinearBandit, flatten

ALGORITHMS = ["linucb", "thompson"]


def bandit(algorithm="linucb", seed=0, bits=12, **kw):
    return LinearBandit(Featurizer(bits), np.random.default_rng(seed), algorithm=algorithm, **kw)


def test_flatten_follows_personalizer_feature_objects():
    features = [
        {"time": "morning"},
        {"user": {"tier": "gold", "age": 34, "vip": True, "nothing": None}},
        {"tags": ["a", "b"], "vec": [0.5, 2], "deep": {"er": {"x": 1.5}}},
    ]
    assert flatten(features) == [
        ("time=morning", 1.0),
        ("user.tier=gold", 1.0),
        ("user.age", 34.0),
        ("user.vip=true", 1.0),
        ("tags=a", 1.0),
        ("tags=b", 1.0),
        ("vec[0]", 0.5),
        ("vec[1]", 2.0),
        ("deep.er.x", 1.5),
    ]
    assert flatten([{"x": float("nan")}, {"y": float("inf")}, {"z": 10**400}]) == [("z", 1e6)]
    assert flatten([{"big": -(10**9)}]) == [("big", -1e6)]
    with pytest.raises(ValueError, match="more than 3 features"):
        flatten([{"a": [1, 2, 3, 4]}], limit=3)


def test_featurizer_is_deterministic_across_processes():
    features = [{"time": "morning"}, {"user": {"tier": "gold", "age": 34}}]
    f = Featurizer(12)
    context = f.encode(features)
    action = f.action("article-7", [{"topic": "sports"}])
    slots, values = f.joint(context, action)
    # bias, 3 context, 2 action (id + topic), 3 × 2 crosses
    assert len(slots) == len(values) == 1 + 3 + 2 + 6
    assert slots.min() >= 0
    assert slots.max() < 4096
    again = Featurizer(12).joint(Featurizer(12).encode(features), action)
    assert np.array_equal(slots, again[0])
    assert np.array_equal(values, again[1])
    code = (
        "from segue.decide.bandits import Featurizer\n"
        "f = Featurizer(12)\n"
        f"c = f.encode({features!r})\n"
        "a = f.action('article-7', [{'topic': 'sports'}])\n"
        "print(f.joint(c, a)[0].tolist())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert msgspec.json.decode(out.stdout) == slots.tolist()
    # the value of a number is its value; crosses multiply
    assert 34.0 in values.tolist()
    assert values.tolist().count(34.0) == 3


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sherman_morrison_matches_the_direct_inverse(algorithm):
    ridge = 0.7
    b = bandit(algorithm, bits=8, ridge=ridge)  # a small space, so slots collide too
    f = b.featurizer
    rng = np.random.default_rng(1)
    dim = f.dim
    big_a = ridge * np.eye(dim)
    big_b = np.zeros(dim)
    for step in range(300):
        context = f.encode([{"u": {"seg": f"s{step % 7}", "x": float(rng.normal())}}])
        action = f.action(f"a{rng.integers(5)}", [{"color": ["red", "blue"][step % 2]}])
        reward = float(rng.normal())
        assert b.learn(context, action, reward)
        slots, values = f.joint(context, action)
        x = np.zeros(dim)
        np.add.at(x, slots, values)
        big_a += np.outer(x, x)
        big_b += reward * x
    seen, inverse = b.inverse()
    expected = np.linalg.inv(big_a)
    np.testing.assert_allclose(inverse, expected[np.ix_(seen, seen)], atol=1e-9)
    unseen = np.setdiff1d(np.arange(dim), seen)
    np.testing.assert_allclose(expected[np.ix_(unseen, unseen)], np.eye(len(unseen)) / ridge)
    weights_at, weights = b.weights()
    np.testing.assert_allclose(weights, np.linalg.solve(big_a, big_b)[weights_at], atol=1e-9)
    assert b.learned == 300


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_probabilities_sum_to_one_and_excluded_actions_get_zero(algorithm):
    b = bandit(algorithm, exploration=0.2)
    f = b.featurizer
    context = f.encode([{"user": {"tier": "gold"}}])
    actions = [f.action(f"a{i}", [{"n": i}]) for i in range(5)]
    for _ in range(50):
        choice = b.choose(context, actions, frozenset({1, 3}))
        assert choice.probabilities.sum() == pytest.approx(1.0)
        assert choice.probabilities[1] == choice.probabilities[3] == 0.0
        assert min(choice.probabilities[[0, 2, 4]]) >= 0.2 / 3 - 1e-12
        assert choice.chosen in (0, 2, 4)
        assert choice.ranking[0] == choice.chosen
        assert sorted(choice.ranking) == [0, 1, 2, 3, 4]
        assert choice.ranking[-2:] == [1, 3]
        b.learn(context, actions[choice.chosen], 1.0 if choice.chosen == 4 else 0.0)
    nobody = b.choose(context, actions, frozenset(range(5)))
    assert nobody.chosen is None
    assert nobody.probabilities.tolist() == [0.0] * 5


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_reported_probabilities_are_the_real_choice_frequencies(algorithm):
    b = bandit(algorithm, seed=3, exploration=0.2)
    f = b.featurizer
    context = f.encode([{"k": "v"}])
    actions = [f.action(f"a{i}", []) for i in range(4)]
    for i in range(40):  # a partly trained model: the actions differ but are not settled
        b.learn(context, actions[i % 4], [0.2, 0.5, 0.55, 0.1][i % 4])
    rounds = 4000
    counts = np.zeros(4)
    reported = np.zeros(4)
    for _ in range(rounds):
        choice = b.choose(context, actions)
        counts[choice.chosen] += 1
        reported += choice.probabilities
    np.testing.assert_allclose(counts / rounds, reported / rounds, atol=0.025)
    if algorithm == "linucb":
        assert (reported / rounds).max() == pytest.approx(0.8 + 0.05)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_learns_a_context_dependent_best_action(algorithm):
    """Three segments, three actions; each segment has its own best action."""
    rng = np.random.default_rng(7)
    b = bandit(algorithm, seed=11, exploration=0.2)
    f = b.featurizer
    actions = [f.action(name, [{"kind": name[0]}]) for name in ("news", "sport", "music")]
    p_click = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.2], [0.2, 0.1, 0.5]])
    chosen_best, greedy_best = [], []
    for _ in range(1500):
        segment = int(rng.integers(3))
        context = f.encode([{"user": {"segment": f"s{segment}", "hour": int(rng.integers(24))}}])
        choice = b.choose(context, actions)
        best = int(np.argmax(p_click[segment]))
        chosen_best.append(choice.chosen == best)
        greedy_best.append(int(np.argmax(choice.probabilities)) == best)
        clicked = rng.random() < p_click[segment, choice.chosen]
        b.learn(context, actions[choice.chosen], 1.0 if clicked else 0.0)
    assert sum(greedy_best[-300:]) >= 0.9 * 300
    assert sum(chosen_best[-300:]) >= 0.75 * 300  # ε = 0.2 caps this near 0.87
    assert sum(chosen_best[:300]) < sum(chosen_best[-300:])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_state_round_trips_and_is_versioned(algorithm):
    b = bandit(algorithm, seed=5)
    f = b.featurizer
    actions = [f.action(f"a{i}", []) for i in range(3)]
    for i in range(30):
        b.learn(f.encode([{"s": f"s{i % 3}"}]), actions[i % 3], float(i % 2))
    data = b.to_bytes()
    copy = bandit(algorithm, seed=5)
    copy.load_bytes(data)
    assert copy.learned == 30
    assert copy.size == b.size
    for got, want in zip(copy.inverse(), b.inverse(), strict=True):
        np.testing.assert_array_equal(got, want)
    b2 = bandit(algorithm, seed=9)
    b2.load_bytes(data)
    copy.rng = np.random.default_rng(9)
    context = f.encode([{"s": "s1"}])
    assert copy.choose(context, actions).ranking == b2.choose(context, actions).ranking
    state = msgspec.msgpack.decode(data)
    with pytest.raises(ValueError, match="version"):
        copy.load_bytes(msgspec.msgpack.encode({**state, "version": 99}))
    with pytest.raises(ValueError, match="dimension"):
        bandit(algorithm, bits=10).load_bytes(data)
    with pytest.raises(ValueError, match="inconsistent"):
        copy.load_bytes(msgspec.msgpack.encode({**state, "theta": b"\0" * 8}))
    with pytest.raises(ValueError, match="not a bandit state"):
        copy.load_bytes(b"garbage")
    assert copy.learned == 30  # a failed load changes nothing


def test_non_finite_rewards_teach_nothing():
    b = bandit()
    f = b.featurizer
    context, action = f.encode([{"a": 1}]), f.action("x", [])
    assert not b.learn(context, action, float("nan"))
    assert not b.learn(context, action, float("inf"))
    assert b.learned == 0
    assert b.size == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="algorithm"):
        bandit("greedy")
    with pytest.raises(ValueError, match="exploration"):
        bandit(exploration=1.5)
    with pytest.raises(ValueError, match="bits"):
        Featurizer(30)


def test_learn_batch_equals_one_by_one_and_leaves_the_old_posterior_untouched():
    one, batch = bandit(seed=1), bandit(seed=1)
    f = one.featurizer
    rng = np.random.default_rng(4)
    items = [
        (f.encode([{"x": float(rng.normal())}]), f.action(f"a{i % 3}", []), float(i % 2))
        for i in range(50)
    ]
    for context, action, reward in items:
        one.learn(context, action, reward)
    before = batch.inverse()
    old = batch._post  # what a concurrent choose may still be reading
    assert batch.learn_batch([*items, (items[0][0], items[0][1], float("nan"))]) == 50
    assert old.m == before[0].size == 0  # the old posterior was not modified in place
    for got, want in zip(batch.inverse(), one.inverse(), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert batch.learned == one.learned == 50
