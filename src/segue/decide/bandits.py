"""Contextual bandits over hashed features: the featurizer, LinUCB and linear Thompson sampling.

Pure and synchronous: numpy only, no I/O, no clock; randomness comes from an injected
``numpy.random.Generator``, so a run can be replayed.

Features follow Azure Personalizer: a list of objects whose top-level keys are namespaces,
``[{"time": "morning"}, {"user": {"tier": "gold", "age": 34}}]``. Nested keys join with
``.``; a string is a one-hot feature ``user.tier=gold``, a number a real-valued one
(``user.age``, 34.0), a boolean a one-hot ``key=true``; lists hold several values of one
feature (numbers are indexed, ``key[0]``). Names are hashed (CRC-32, the same in every
process) into ``2**bits`` slots.

The model is one ridge regression over the joint vector of a (context, action) pair: a
bias, the context features, the action's features (its id among them) and every context
× action cross — quadratic interactions, as Personalizer's ``-q ::``, so the best action
may depend on the context. ``A⁻¹`` is kept only over the slots seen so far (a slot never
seen contributes ``1/ridge`` on the diagonal and nothing else, exactly) and updated with
Sherman–Morrison rank-1 steps; ``θ`` follows by recursive least squares, so no step ever
inverts a matrix.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
import numpy as np
from numpy.typing import NDArray

__all__ = ["ALGORITHMS", "Choice", "Featurizer", "LinearBandit", "Sparse", "flatten"]

#: the policies a :class:`LinearBandit` can follow
ALGORITHMS = ("linucb", "thompson")
#: version of the serialised model state (:meth:`LinearBandit.to_bytes`)
STATE_VERSION = 1
_CLIP = 1e6  # real-valued features are clipped to ±_CLIP so no update can overflow
_DEPTH = 8  # nesting deeper than this is ignored
_BIAS = "\x00bias"
_ACTION_ID = "\x00action.id="
_PRIME = np.uint64(0x01000193)
_MASK32 = np.uint64(0xFFFFFFFF)

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


class Sparse(NamedTuple):
    """Hashed features: 32-bit name hashes and their values, aligned."""

    hashes: NDArray[np.uint64]
    values: Floats


class Choice(NamedTuple):
    """What the policy did with one set of actions.

    Attributes:
        ranking: action positions, the chosen one first, then by probability and score,
            excluded ones last.
        probabilities: per action position, the probability with which the policy chose
            it (0 for excluded actions); the propensities off-policy evaluation needs.
        chosen: the chosen position, or None when every action was excluded.
    """

    ranking: list[int]
    probabilities: Floats
    chosen: int | None


def flatten(features: Sequence[Any], limit: int = 1_000) -> list[tuple[str, float]]:
    """Personalizer-style feature objects → ``(name, value)`` pairs.

    Non-finite numbers and ``None`` are skipped; numbers are clipped to ±1e6.

    Raises:
        ValueError: more than ``limit`` features.
    """
    out: list[tuple[str, float]] = []
    for item in features:
        if isinstance(item, Mapping):
            for key, value in item.items():
                _walk(str(key), value, out, 1, limit)
        else:
            _walk("", item, out, 1, limit)
    return out


def _walk(path: str, value: Any, out: list[tuple[str, float]], depth: int, limit: int) -> None:
    if len(out) > limit:
        raise ValueError(f"more than {limit} features")
    if value is None or depth > _DEPTH:
        return
    if isinstance(value, bool):
        out.append((f"{path}={'true' if value else 'false'}", 1.0))
    elif isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            number = _CLIP if value > 0 else -_CLIP
        if math.isfinite(number):
            out.append((path, max(-_CLIP, min(_CLIP, number))))
    elif isinstance(value, str):
        out.append((f"{path}={value}", 1.0))
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            _walk(f"{path}.{key}", inner, out, depth + 1, limit)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            numeric = isinstance(inner, int | float) and not isinstance(inner, bool)
            _walk(f"{path}[{i}]" if numeric else path, inner, out, depth + 1, limit)
    if len(out) > limit:
        raise ValueError(f"more than {limit} features")


def _hash(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogatepass"))


def _mix(h: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """murmur3's 32-bit finaliser: every input bit reaches every low output bit."""
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & _MASK32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & _MASK32
    return h ^ (h >> np.uint64(16))


class Featurizer:
    """Hashes feature objects into ``2**bits`` slots and builds joint (context, action) vectors.

    Args:
        bits: log2 of the hash space (the model's dimension).
        max_features: most flattened features one context or one action may have.
    """

    def __init__(self, bits: int = 12, max_features: int = 256) -> None:
        if not 4 <= bits <= 24:
            raise ValueError("bits must be between 4 and 24")
        self.bits = bits
        self.dim = 1 << bits
        self.max_features = max_features
        self._bias = np.array([_hash(_BIAS)], dtype=np.uint64)

    def encode(self, features: Sequence[Any]) -> Sparse:
        """Hash one feature list (a context or an action's features).

        Raises:
            ValueError: more than ``max_features`` features.
        """
        pairs = flatten(features, self.max_features)
        return Sparse(
            np.array([_hash(name) for name, _ in pairs], dtype=np.uint64),
            np.array([value for _, value in pairs], dtype=np.float64),
        )

    def action(self, action_id: str, features: Sequence[Any]) -> Sparse:
        """An action's features with its id as one more one-hot feature, so actions without
        features are still told apart (per-action models as a special case)."""
        own = self.encode(features)
        return Sparse(
            np.concatenate([np.array([_hash(_ACTION_ID + action_id)], np.uint64), own.hashes]),
            np.concatenate([np.ones(1), own.values]),
        )

    def joint(self, context: Sparse, action: Sparse) -> tuple[Ints, Floats]:
        """Slots and values of the joint vector: bias, context, action, context × action.

        Slots may repeat (hash collisions); every use of the vector sums over them.
        """
        crosses = _mix(((context.hashes[:, None] * _PRIME) & _MASK32) ^ action.hashes[None, :])
        hashes = np.concatenate([self._bias, context.hashes, action.hashes, crosses.ravel()])
        values = np.concatenate(
            [
                np.ones(1),
                context.values,
                action.values,
                np.outer(context.values, action.values).ravel(),
            ]
        )
        return (_mix(hashes) & np.uint64(self.dim - 1)).astype(np.int64), values


class _State(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    dim: int
    ridge: float
    learned: int
    slots: bytes  # int64 hashed slot per row of A⁻¹
    ainv: bytes  # float64, m × m, row-major
    theta: bytes  # float64, m


class _Posterior:
    """``A⁻¹`` and ``θ`` over the ``m`` slots seen so far, in buffers that grow by doubling."""

    __slots__ = ("ainv", "m", "row", "slots", "theta")

    def __init__(self, dim: int) -> None:
        self.row = np.full(dim, -1, dtype=np.int64)  # hashed slot → row of A⁻¹
        self.slots = np.zeros(0, dtype=np.int64)  # row → hashed slot
        self.ainv = np.zeros((0, 0))
        self.theta = np.zeros(0)
        self.m = 0

    def copy(self) -> _Posterior:
        other = _Posterior(0)
        m = self.m
        other.row, other.slots = self.row.copy(), self.slots[:m].copy()
        other.ainv, other.theta = self.ainv[:m, :m].copy(), self.theta[:m].copy()
        other.m = m
        return other

    def grow(self, slots: Ints, ridge: float) -> None:
        new = slots[self.row[slots] < 0]
        if not len(new):
            return
        m, n = self.m, self.m + len(new)
        if n > len(self.theta):
            capacity = max(n, 2 * len(self.theta), 16)
            ainv = np.zeros((capacity, capacity))
            ainv[:m, :m] = self.ainv[:m, :m]
            theta = np.zeros(capacity)
            theta[:m] = self.theta[:m]
            slots_of = np.zeros(capacity, dtype=np.int64)
            slots_of[:m] = self.slots[:m]
            self.ainv, self.theta, self.slots = ainv, theta, slots_of
        self.ainv[m:n, :] = 0.0
        self.ainv[:, m:n] = 0.0
        self.ainv[range(m, n), range(m, n)] = 1.0 / ridge
        self.theta[m:n] = 0.0
        self.slots[m:n] = new
        self.row[new] = np.arange(m, n)
        self.m = n

    def update(self, slots: Ints, values: Floats, reward: float, ridge: float) -> None:
        """One Sherman–Morrison step on ``A⁻¹`` and the matching recursive-least-squares
        step on ``θ``: ``θ += A⁻¹x (r − θ·x) / (1 + xᵀA⁻¹x)``."""
        self.grow(np.unique(slots), ridge)
        rows = self.row[slots]
        m = self.m
        ainv = self.ainv[:m, :m]
        u = ainv[:, rows] @ values  # A⁻¹x
        denominator = 1.0 + float(values @ u[rows])  # 1 + xᵀA⁻¹x ≥ 1
        error = reward - float(self.theta[rows] @ values)
        self.theta[:m] += u * (error / denominator)
        scaled = u / denominator
        for start in range(0, m, 512):  # bounded temporaries for large models
            ainv[start : start + 512] -= np.outer(u[start : start + 512], scaled)


class LinearBandit:
    """A contextual bandit over joint (context, action) vectors with an ε floor.

    ``choose`` may run while ``learn_batch`` runs in a worker thread: a batch is learned
    on a copy of the posterior that replaces the old one in one assignment.

    Args:
        featurizer: builds the joint vectors; its ``dim`` sizes the model.
        rng: the only source of randomness.
        algorithm: ``linucb`` (choose the highest upper confidence bound
            ``θ·x + alpha·√(xᵀA⁻¹x)``) or ``thompson`` (sample ``θ ~ N(θ̂, alpha²·A⁻¹)``;
            the probabilities are estimated from ``samples`` draws and the action is drawn
            from them, so the logged propensity is exactly the one used).
        exploration: ε; every eligible action keeps at least ε / (eligible actions).
        alpha: width of the confidence bound (LinUCB) or scale of the posterior (Thompson).
        ridge: λ of the ridge prior ``A = λI + Σ x xᵀ``.
        samples: posterior draws per choice (Thompson).
    """

    def __init__(
        self,
        featurizer: Featurizer,
        rng: np.random.Generator,
        *,
        algorithm: str = "linucb",
        exploration: float = 0.2,
        alpha: float = 0.5,
        ridge: float = 1.0,
        samples: int = 128,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}")
        if not 0.0 <= exploration <= 1.0:
            raise ValueError("exploration must be between 0 and 1")
        if ridge <= 0 or alpha < 0 or samples < 1:
            raise ValueError("ridge must be > 0, alpha >= 0 and samples >= 1")
        self.featurizer = featurizer
        self.rng = rng
        self.algorithm = algorithm
        self.exploration = exploration
        self.alpha = alpha
        self.ridge = ridge
        self.samples = samples
        self.learned = 0
        self._post = _Posterior(featurizer.dim)

    @property
    def size(self) -> int:
        """Rows of ``A⁻¹`` held: the slots seen so far."""
        return self._post.m

    # --- choosing -----------------------------------------------------------------------
    def choose(
        self, context: Sparse, actions: Sequence[Sparse], excluded: frozenset[int] = frozenset()
    ) -> Choice:
        """Rank ``actions`` for ``context`` and draw the one to show.

        Args:
            context: the hashed context features.
            actions: the hashed features of each action (see :meth:`Featurizer.action`).
            excluded: positions that must not be chosen (probability 0, ranked last).
        """
        eligible = [j for j in range(len(actions)) if j not in excluded]
        probabilities = np.zeros(len(actions))
        if not eligible:
            return Choice(list(range(len(actions))), probabilities, None)
        xs = [self.featurizer.joint(context, actions[j]) for j in eligible]
        post = self._post  # one read: a concurrent learn_batch swaps in a new one
        if self.algorithm == "linucb":
            scores, greedy = self._linucb(post, xs)
        else:
            scores, greedy = self._thompson(post, xs)
        p = (1.0 - self.exploration) * greedy + self.exploration / len(eligible)
        p /= p.sum()
        pick = int(self.rng.choice(len(eligible), p=p))
        probabilities[eligible] = p
        order = sorted(range(len(eligible)), key=lambda i: (i != pick, -p[i], -scores[i], i))
        ranking = [eligible[i] for i in order] + sorted(excluded & set(range(len(actions))))
        return Choice(ranking, probabilities, eligible[pick])

    def _linucb(self, post: _Posterior, xs: list[tuple[Ints, Floats]]) -> tuple[Floats, Floats]:
        scores = np.zeros(len(xs))
        for k, (slots, values) in enumerate(xs):
            rows = post.row[slots]
            seen = rows >= 0
            r, v, unseen = rows[seen], values[seen], values[~seen]
            var = float(v @ post.ainv[np.ix_(r, r)] @ v) + float(unseen @ unseen) / self.ridge
            scores[k] = float(post.theta[r] @ v) + self.alpha * math.sqrt(max(var, 0.0))
        best = scores >= scores.max() - 1e-12  # ties share the greedy mass
        return scores, best / best.sum()

    def _thompson(self, post: _Posterior, xs: list[tuple[Ints, Floats]]) -> tuple[Floats, Floats]:
        """Scores are linear in θ, so they are drawn from their own K-dimensional posterior
        ``N(Xθ̂, alpha²·X A⁻¹ Xᵀ)``: exact, and cheap however many slots the actions use."""
        union, inverse = np.unique(np.concatenate([s for s, _ in xs]), return_inverse=True)
        design = np.zeros((len(xs), len(union)))
        start = 0
        for k, (s, v) in enumerate(xs):
            np.add.at(design[k], inverse[start : start + len(s)], v)
            start += len(s)
        rows = post.row[union]
        seen = np.flatnonzero(rows >= 0)
        r = rows[seen]
        scores = design[:, seen] @ post.theta[r]
        known = design[:, seen]
        cov = known @ post.ainv[np.ix_(r, r)] @ known.T
        fresh = np.delete(design, seen, axis=1)
        cov += fresh @ fresh.T / self.ridge
        noise = _sqrt_psd(cov) @ self.rng.standard_normal((len(xs), self.samples))
        wins = np.bincount(
            np.argmax(scores[:, None] + self.alpha * noise, axis=0), minlength=len(xs)
        )
        return scores, wins / self.samples

    # --- learning -----------------------------------------------------------------------
    def learn(self, context: Sparse, action: Sparse, reward: float) -> bool:
        """Fold one observed reward into the model (one Sherman–Morrison step), in place.

        Returns:
            False when the reward or the features are not finite (nothing learned).
        """
        slots, values = self.featurizer.joint(context, action)
        if not math.isfinite(reward) or not np.all(np.isfinite(values)):
            return False
        self._post.update(slots, values, reward, self.ridge)
        self.learned += 1
        return True

    def learn_batch(self, batch: Sequence[tuple[Sparse, Sparse, float]]) -> int:
        """Learn ``(context, action, reward)`` triples on a copy of the model, then swap it
        in; safe to run in a worker thread while ``choose`` runs (one writer at a time).

        Returns:
            how many were learned (non-finite ones are skipped).
        """
        post = self._post.copy()
        learned = 0
        for context, action, reward in batch:
            slots, values = self.featurizer.joint(context, action)
            if math.isfinite(reward) and np.all(np.isfinite(values)):
                post.update(slots, values, reward, self.ridge)
                learned += 1
        self._post = post
        self.learned += learned
        return learned

    def inverse(self) -> tuple[Ints, Floats]:
        """The seen slots and ``A⁻¹`` over them (a copy; for inspection and tests)."""
        post = self._post
        return post.slots[: post.m].copy(), post.ainv[: post.m, : post.m].copy()

    def weights(self) -> tuple[Ints, Floats]:
        """The seen slots and ``θ`` over them (a copy)."""
        post = self._post
        return post.slots[: post.m].copy(), post.theta[: post.m].copy()

    # --- state --------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The learned state (not the policy settings), versioned, as msgpack."""
        post = self._post
        m = post.m
        return msgspec.msgpack.encode(
            _State(
                version=STATE_VERSION,
                dim=self.featurizer.dim,
                ridge=self.ridge,
                learned=self.learned,
                slots=post.slots[:m].tobytes(),
                ainv=np.ascontiguousarray(post.ainv[:m, :m]).tobytes(),
                theta=post.theta[:m].tobytes(),
            )
        )

    def load_bytes(self, data: bytes) -> None:
        """Replace the learned state with one saved by :meth:`to_bytes`.

        Raises:
            ValueError: the bytes are not a state, of another version, dimension or ridge.
        """
        try:
            state = msgspec.msgpack.decode(data, type=_State)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a bandit state: {exc}") from None
        if state.version != STATE_VERSION:
            raise ValueError(f"bandit state version {state.version}, expected {STATE_VERSION}")
        dim = self.featurizer.dim
        if state.dim != dim or state.ridge != self.ridge:
            raise ValueError("bandit state was learned with another dimension or ridge")
        slots = np.frombuffer(state.slots, dtype=np.int64).copy()
        m = len(slots)
        ainv = np.frombuffer(state.ainv, dtype=np.float64)
        theta = np.frombuffer(state.theta, dtype=np.float64)
        valid = len(ainv) == m * m and len(theta) == m and len(np.unique(slots)) == m
        if not valid or (m and (slots.min() < 0 or slots.max() >= dim)):
            raise ValueError("bandit state is inconsistent")
        post = _Posterior(dim)
        post.row[slots] = np.arange(m)
        post.slots, post.theta, post.ainv = slots, theta.copy(), ainv.reshape(m, m).copy()
        post.m = m
        self._post = post
        self.learned = state.learned


def _sqrt_psd(cov: Floats) -> Floats:
    """A matrix ``L`` with ``L Lᵀ = cov`` (Cholesky; eigen-decomposition if drift made
    ``cov`` lose definiteness)."""
    try:
        return np.asarray(np.linalg.cholesky(cov), dtype=np.float64)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh((cov + cov.T) / 2)
        return np.asarray(v * np.sqrt(np.clip(w, 0.0, None)), dtype=np.float64)
