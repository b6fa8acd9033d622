"""Many pairs weighed at once: the comparisons of :mod:`._records` over arrays.

A batch of a thousand identifies brings ~20,000 candidate pairs. Weighed one by one, each
pair costs several µs of interpreter work (a function call per field, a weight lookup, a
bound): half of the batch's scoring. Here each field is compared for all pairs in one call
into rapidfuzz (``cpdist``) or one numpy expression, only on the pairs that still need it
(a name that agrees exactly needs no similarity; a street only where the pair can still
reach the floor), and the weights add up column by column, in the order
:meth:`~._model.MatchModel.weigh` adds them, so each total is the same float.

Private: :meth:`~._model.MatchModel.weigh_many` is the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler
from rapidfuzz.process import cpdist

from segue.identity._records import _ADDRESS, _NUMBER, FIELDS, NULL, MatchRecord

if TYPE_CHECKING:
    from segue.identity._model import MatchModel

Floats = npt.NDArray[np.float64]
Levels = npt.NDArray[np.int8]
Mask = npt.NDArray[np.bool_]
Objects = npt.NDArray[np.object_]

_FIRST: Final = FIELDS.index("first_name")
_LAST: Final = FIELDS.index("last_name")
_BIRTH: Final = FIELDS.index("birth")
_STREET: Final = FIELDS.index("street")
_SWAPPED: Final = 1
# a pair is dropped unweighed only below the floor by more than this (as in weigh_above)
_SLACK: Final = 1e-9
_jw = JaroWinkler.normalized_similarity


def _objects(values: Sequence[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _present(values: Objects) -> Mask:
    """Where a value is held (numpy compares an object array with None element by element)."""
    found: Mask = values != None  # noqa: E711
    return found


def _similarity(scorer: Callable[..., Any], a: Objects, b: Objects) -> Floats:
    """``scorer`` per pair (rapidfuzz scores a pair holding None as 0)."""
    result: Floats = cpdist(a, b, scorer=scorer, dtype=np.float64)
    return result


def _distance(a: Objects, b: Objects) -> npt.NDArray[np.int32]:
    result: npt.NDArray[np.int32] = cpdist(a, b, scorer=OSA.distance, dtype=np.int32)
    return result


def _on(rows: Mask, compute: Callable[[Objects, Objects], Any], a: Objects, b: Objects) -> Any:
    """``compute`` over the pairs of ``rows`` only, scattered back (zero elsewhere)."""
    index = np.flatnonzero(rows)
    found = compute(a[index], b[index])
    out = np.zeros(len(rows), dtype=found.dtype)
    out[index] = found
    return out


class _Side:
    """One side of the pairs, field by field, gathered from distinct records."""

    def __init__(self, records: Sequence[MatchRecord], index: npt.NDArray[np.intp]) -> None:
        n = len(records)
        columns = [np.fromiter(map(attrgetter(f), records), dtype=object, count=n) for f in FIELDS]
        self.values = [column[index] for column in columns]
        # found per record, then spread to the pairs: a record is in ~20 pairs
        self.present = [_present(column)[index] for column in columns]
        births = np.fromiter(
            (d.year * 10_000 + d.month * 100 + d.day if d else 0 for d in columns[_BIRTH]),
            dtype=np.int32,
            count=n,
        )[index]
        self.year, self.month, self.day = births // 10_000, births // 100 % 100, births % 100
        #: lengths of the names (0 when missing): a one-letter name is an initial
        self.lengths = {
            i: np.fromiter((len(v) if v else 0 for v in columns[i]), dtype=np.int32, count=n)[index]
            for i in (_FIRST, _LAST)
        }


def _name_levels(a: _Side, b: _Side, i: int, other: int) -> Levels:
    both = a.present[i] & b.present[i]
    ai, bi, ao, bo = a.values[i], b.values[i], a.values[other], b.values[other]
    exact = both & (ai == bi)
    open_ = both & ~exact
    swapped = np.zeros(len(ai), dtype=bool)
    one = open_ & (ai == bo) & a.present[other]
    if one.any():
        swapped |= one & (_on(one, partial(_similarity, _jw), ao, bi) >= 0.8)
    two = open_ & (bi == ao) & b.present[other]
    if two.any():
        swapped |= two & (_on(two, partial(_similarity, _jw), ai, bo) >= 0.8)
    open_ &= ~swapped
    similarity = _on(open_, partial(_similarity, _jw), ai, bi)
    close = similarity >= 0.92
    edit = open_ & ~close
    if edit.any():
        close |= edit & (_on(edit, _distance, ai, bi) <= 1)
    similar = similarity >= 0.8
    # a one-letter name (an initial) is similar to any name it begins
    initial = open_ & ~close & ~similar & ((a.lengths[i] == 1) | (b.lengths[i] == 1))
    for k in np.flatnonzero(initial).tolist():
        similar[k] = ai[k][0] == bi[k][0]
    return _select(both, (exact, swapped, close, similar), 4)


def _birth_levels(a: _Side, b: _Side) -> Levels:
    both = a.present[_BIRTH] & b.present[_BIRTH]
    year, month, day = a.year == b.year, a.month == b.month, a.day == b.day
    exact = year & month & day
    swapped = year & (a.month == b.day) & (a.day == b.month)
    one_differs = (year.astype(np.int8) + month + day) == 2
    return _select(both, (exact, swapped, one_differs), 3)


def _street_levels(a: _Side, b: _Side, rows: npt.NDArray[np.intp]) -> Levels:
    """Street levels of ``rows`` only (the token-set ratio is the costliest comparison)."""
    sa, sb = a.values[_STREET][rows], b.values[_STREET][rows]
    exact = sa == sb
    similarity = _similarity(fuzz.token_set_ratio, sa, sb)
    close = similarity >= 90
    for k in np.flatnonzero(close & ~exact).tolist():
        close[k] = set(_NUMBER.findall(sa[k])) == set(_NUMBER.findall(sb[k]))
    both = np.ones(len(rows), dtype=bool)
    return _select(both, (exact, close, similarity >= 75), 3)


def _simple_levels(a: _Side, b: _Side, i: int) -> Levels:
    both = a.present[i] & b.present[i]
    ai, bi = a.values[i], b.values[i]
    field = FIELDS[i]
    if field == "phone":
        ai = _objects([v[-9:] if v is not None else None for v in ai])
        bi = _objects([v[-9:] if v is not None else None for v in bi])
    exact = both & (ai == bi)
    open_ = both & ~exact
    if field in ("state", "country") or not open_.any():
        return _select(both, (exact,), 1 if field in ("state", "country") else 2)
    if field == "city":
        near = _on(open_, partial(_similarity, _jw), ai, bi) >= 0.9
    else:  # postcode, e-mail and phone: one edit
        near = open_ & (_on(open_, _distance, ai, bi) <= 1)
    if field == "email":
        for k in np.flatnonzero(open_ & ~near).tolist():
            near[k] = ai[k].split("@", 1)[0] == bi[k].split("@", 1)[0]
    return _select(both, (exact, near), 2)


def _select(both: Mask, conditions: Sequence[Mask], otherwise: int) -> Levels:
    """The index of the first condition that holds, ``otherwise`` if none, NULL off ``both``."""
    out = np.full(both.shape, otherwise, dtype=np.int8)
    for level in range(len(conditions) - 1, -1, -1):
        out[conditions[level]] = level
    out[~both] = NULL
    return out


def weigh_pairs(
    model: MatchModel,
    a: Sequence[MatchRecord],
    a_index: npt.NDArray[np.intp],
    b: Sequence[MatchRecord],
    b_index: npt.NDArray[np.intp],
    exact: Floats,
    floor: float,
) -> Floats:
    """The weight of each pair ``(a[a_index[k]], b[b_index[k]])`` as ``model.weigh`` gives
    it, where that is at or above ``floor``; ``-inf`` for some pairs below it.

    Args:
        model: the model.
        a: records of one side (the ``tf`` adjustment is taken from ``exact``, which
            belongs to them).
        a_index: per pair, its record in ``a``.
        b: records of the other side.
        b_index: per pair, its record in ``b``.
        exact: per record of ``a`` and field, the weight of the exact level
            (``model.exact_weights``: term-frequency adjusted where the model does that).
        floor: pairs that cannot reach it need not be weighed in full.
    """
    n = len(a_index)
    if n == 0:
        return np.empty(0, dtype=np.float64)
    left, right = _Side(a, a_index), _Side(b, b_index)
    exact = exact[a_index]
    levels: list[Levels] = []
    for i, field in enumerate(FIELDS):
        if field in ("first_name", "last_name"):
            levels.append(_name_levels(left, right, i, _LAST if i == _FIRST else _FIRST))
        elif field == "birth":
            levels.append(_birth_levels(left, right))
        elif field == "street":
            levels.append(np.full(n, NULL, dtype=np.int8))  # below, where it can matter
        else:
            levels.append(_simple_levels(left, right, i))
    tables = [np.asarray(w, dtype=np.float64) for w in model._weights]
    weights = [_level_weights(tables[i], levels[i], exact[:, i]) for i in range(len(FIELDS))]
    # the street is compared only where the pair could still reach the floor with it
    street = left.present[_STREET] & right.present[_STREET]
    viable = _upper_bound(model, levels, weights, street) >= floor - _SLACK
    rows = np.flatnonzero(viable & street)
    if rows.size:
        levels[_STREET][rows] = _street_levels(left, right, rows)
        weights[_STREET] = _level_weights(tables[_STREET], levels[_STREET], exact[:, _STREET])
    total = _dependent_total(model, levels, weights)
    total[~viable] = -np.inf
    return total


def _level_weights(table: Floats, level: Levels, exact: Floats) -> Floats:
    """Weight per pair at its level (NaN where NULL), the exact level's from ``exact``."""
    out = np.where(level == 0, exact, table[np.maximum(level, 0)])
    out[level == NULL] = np.nan
    return out


def _upper_bound(
    model: MatchModel, levels: list[Levels], weights: list[Floats], street: Mask
) -> Floats:
    """At least the total each pair can reach whatever its street comparison gives, as
    weigh_above bounds it: the strongest address agreement in full and every positive one
    by its independence, the street counted at its cap."""
    independence = model._independence
    bound = np.full(len(levels[0]), model.prior_weight)
    for i, w in enumerate(weights):
        if i in _ADDRESS:
            continue
        if i == _LAST:
            swapped = (levels[_FIRST] == _SWAPPED) & (levels[_LAST] == _SWAPPED)
            w = np.where(swapped, 0.0, w)
        bound += np.nan_to_num(w, nan=0.0)
    strongest = np.where(street, model._caps[_STREET], 0.0)
    spread = np.where(street, max(independence[_STREET], 0.0) * model._caps[_STREET], 0.0)
    for i in _ADDRESS:
        if i == _STREET:
            continue
        w = np.nan_to_num(weights[i], nan=0.0)
        positive = w > 0.0
        strongest = np.where(positive, np.maximum(strongest, w), strongest)
        spread += np.where(positive, max(independence[i], 0.0) * w, 0.0)
        bound += np.where(positive, 0.0, w)
    result: Floats = bound + strongest + spread
    return result


def _dependent_total(model: MatchModel, levels: list[Levels], weights: list[Floats]) -> Floats:
    """``_dependent`` then the sum, column by column in field order (as ``weigh`` adds)."""
    weights = [w.copy() for w in weights]
    swapped = (levels[_FIRST] == _SWAPPED) & (levels[_LAST] == _SWAPPED)
    weights[_LAST][swapped] = 0.0
    n = len(levels[0])
    best = np.full(n, -1, dtype=np.int8)
    best_weight = np.zeros(n)
    for i in _ADDRESS:
        w = weights[i]
        better = (levels[i] != NULL) & (w > best_weight)
        best[better] = i
        best_weight[better] = w[better]
    independence = model._independence
    for i in _ADDRESS:
        w = weights[i]
        scaled = (levels[i] != NULL) & (best != i) & (w > 0)
        w[scaled] = w[scaled] * independence[i]
    total = np.full(n, model.prior_weight)
    for i, w in enumerate(weights):
        total += np.where(levels[i] != NULL, w, 0.0)
    return total
