"""decide(request) → decision: consent gate → candidates → rules → rank → explain → log.

Everything on this path is in memory except the profile read, which goes through the
in-process cache (invalidated when the processor changes the profile): the catalog mirror,
the item models and the ranker live in the process. A request without a known person, or
without consent to personalize, gets a contextual answer — page, item, category, coarse
region and popularity — with ``personalized: false`` and the reason.

When the placement has a running experiment, the unit (see ``segue.experiments.assignment``)
is assigned an arm first: the holdout gets the contextual answer with the reason
``holdout``; a variant gets the placement as the variant changes it. Either way the decision
records the experiment and the arm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import msgspec
import numpy as np
import structlog
from numpy.typing import NDArray

from segue.core.ids import time_ordered_id
from segue.core.model import Decision, Identifier, Item
from segue.core.ports import Clock, DecisionStore
from segue.decide.catalog_view import CatalogView, Columns
from segue.decide.ranking import FEATURES, LinearThompson
from segue.decide.recent import RecentDecisions
from segue.decide.rules import Candidate, PlacementRules, fill_slots
from segue.decide.signals import ItemSignals, PersonSignals
from segue.experiments.assignment import HOLDOUT, Assignment, Experiments, Variant

__all__ = ["DecideEngine", "DecideRequest", "Placement", "with_variant"]

_log = structlog.get_logger("segue.decide")
_SIGNAL_INDEX = {name: i for i, name in enumerate(FEATURES)}


class DecideRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/decide``."""

    placement: str
    user: dict[str, str | int] = {}
    context: dict[str, Any] = {}
    k: int | None = None
    candidates: list[str] | None = None
    channel: str | None = None


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    """A slot in an app or page, with its strategy and rules (configuration)."""

    name: str
    strategy: str = "personalized"  # personalized | popular | similar | bought_together | fresh
    k: int = 10
    channel: str = "web"
    exploration: bool = True
    rules: PlacementRules = PlacementRules()


class PersonView(msgspec.Struct, frozen=True):
    """What the engine knows of the requester after the consent gate."""

    profile_id: str | None
    signals: PersonSignals | None
    personalized: bool
    reason: str


class FeedbackLike(Protocol):
    """Feedback on a decision as the processor reports it."""

    @property
    def decision_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def item_ids(self) -> tuple[str, ...]: ...

    @property
    def at(self) -> float: ...


ProfileReader = Callable[[dict[str, str]], Awaitable[tuple[str | None, list[str]]]]


class ConsentVerdict(Protocol):
    @property
    def allowed(self) -> bool: ...

    @property
    def reason(self) -> str: ...


#: (subjects of the person, the request's context, Sec-GPC) → the personalization verdict
ConsentGate = Callable[[list[str], Mapping[str, Any], bool], Awaitable[ConsentVerdict]]
SignalsReader = Callable[[str], Awaitable[PersonSignals | None]]


class DecideEngine:
    """Answers decide requests.

    Args:
        catalog: the in-memory catalog mirror.
        items: item models (popularity, neighbours, fresh).
        find_profile: identifiers → (profile id, the person's subjects), cached by the caller.
        consent: the consent gate for ``personalization`` (every read of personal data
            waits for its yes).
        person_signals: profile id → its behaviour signals (cached by the caller).
        decisions: the decision log.
        clock: wall clock.
        placements: configured placements; unknown ones get the defaults.
        seed: seeds the exploration RNG (replayable tests).
    """

    def __init__(
        self,
        catalog: CatalogView,
        items: ItemSignals,
        find_profile: ProfileReader,
        person_signals: SignalsReader,
        consent: ConsentGate,
        decisions: DecisionStore,
        clock: Clock,
        placements: Mapping[str, Placement] | None = None,
        seed: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.items = items
        self._find_profile = find_profile
        self._consent = consent
        self._person_signals = person_signals
        self._decisions = decisions
        self._clock = clock
        self.placements = dict(placements or {})
        self.rankers: dict[str, LinearThompson] = {}
        self._rng = np.random.default_rng(seed)
        self._pending: list[Decision] = []
        self._flushing: asyncio.Task[None] | None = None
        #: recent decisions by id, for feedback without a store round trip
        self.recent = RecentDecisions(50_000)
        #: decision id → (exposure time, items shown, items clicked) awaiting the window
        self._exposed: dict[str, tuple[float, tuple[str, ...], set[str]]] = {}
        #: seconds after an exposure at which unclicked items count as not chosen
        self.attribution_window = 10.0
        self.feedback_seen = {"exposure": 0, "click": 0, "conversion": 0, "learned": 0}
        #: experiments by placement; set by the composition root (None: no experiments)
        self.experiments: Experiments | None = None
        #: a request's ``user`` → the profile id their first event will create (None: no
        #: identifier it could derive from): the unit of a visitor not known yet
        self.visitor_unit: Callable[[Mapping[str, str | int]], str | None] | None = None
        self._variants: dict[tuple[str, str, str], Placement] = {}

    def ranker(self, placement: str) -> LinearThompson:
        model = self.rankers.get(placement)
        if model is None:
            model = self.rankers[placement] = LinearThompson()
        return model

    async def decide(self, request: DecideRequest, *, gpc: bool = False) -> dict[str, Any]:
        """Answer one request (see DESIGN.md for the response shape)."""
        now = self._clock.now()
        placement = self.placements.get(request.placement) or Placement(name=request.placement)
        person = await self._person(request, gpc)
        assigned = await self._assign(request, person, gpc, now) if self.experiments else None
        ranker_key = request.placement
        if assigned is not None:
            arm = assigned[0]
            if arm.variant is None:  # the holdout: no personal data, whatever the consent
                person = PersonView(person.profile_id, None, False, HOLDOUT)
            else:
                placement = self._variant_placement(placement, arm)
                if arm.variant.model is not None:
                    ranker_key = f"{request.placement}:{arm.variant.model}"
        k = max(1, min(request.k or placement.k, 100))
        context = request.context
        region = _text(context.get("region"))
        item_id = _text(context.get("item_id"))
        category = _text(context.get("category"))
        items = self.catalog.items
        if category is None and item_id is not None and item_id in items:
            category = items[item_id].category
        signals = person.signals if person.personalized else None
        pool = self._candidates(request, placement, signals, item_id, category, region, now)
        if item_id is not None and request.candidates is None:
            pool.drop(item_id)  # not the item the person is looking at
        cols = self.catalog.columns
        ranker = self.ranker(ranker_key)
        args = (pool, cols, placement, signals, item_id, now, ranker)
        kept, removed, after_rules, x, ranked = self._shortlist(*args, k, cols.rows(pool.ids))
        chosen = fill_slots(ranked, placement.rules, k)
        shown = np.fromiter((c.catalog_row for c in chosen), dtype=np.intp, count=len(chosen))
        if not cols.holds(shown, [c.item_id for c in chosen]):
            # a row found by fingerprint was another item's (see Columns.rows): by id
            kept, removed, after_rules, x, ranked = self._shortlist(
                *args, k, cols.exact_rows(pool.ids)
            )
            chosen = fill_slots(ranked, placement.rules, k)
        picked = [c.row for c in chosen]
        for c, sources in zip(chosen, pool.sources_at(kept[picked]), strict=True):
            c.sources = sources
        channel = request.channel or placement.channel
        strategy = (
            placement.strategy
            if person.personalized or request.candidates is not None
            else "contextual"
        )
        decision_context: dict[str, Any] = {
            "region": region,
            "item_id": item_id,
            "category": category,
            "x": x[picked].round(5).tolist(),
            # the weights the scores came from: explains a decision after the model moved
            "w": ranker.mean.round(5).tolist(),
        }
        if ranker_key != request.placement:
            decision_context["ranker"] = ranker_key
        if assigned is not None:  # the reports consumer attributes by it, config or not
            window = assigned[0].experiment.attribution_window_s
            decision_context["attribution_window_s"] = window
        decision = Decision(
            decision_id=time_ordered_id(now),
            created_at=now,
            placement=request.placement,
            # in an experiment: the unit, so exposures are counted where it was assigned
            profile_id=(
                assigned[1]
                if assigned is not None
                else person.profile_id
                if person.personalized
                else None
            ),
            items=[c.item_id for c in chosen],
            scores=[c.score for c in chosen],
            propensities=[c.propensity for c in chosen],
            strategy=strategy,
            personalized=person.personalized,
            reason=person.reason,
            model_version=f"lts-{ranker.version}",
            features_used=[f for f in FEATURES if f != "bias"],
            data_categories=["behavioural", "catalog"] if person.personalized else ["catalog"],
            experiment=assigned[0].experiment.name if assigned is not None else None,
            variant=assigned[0].arm if assigned is not None else None,
            context=decision_context,
        )
        self._log_decision(decision)
        out_items = []
        for c in chosen:
            item = cols.items[c.catalog_row]
            out_items.append(
                {
                    "item_id": c.item_id,
                    "score": c.score,
                    "propensity": c.propensity,
                    "content": item.content.get(channel) or {"title": item.title},
                    "reason": c.reason or _reason(c, item, signals),
                }
            )
        return {
            "decision_id": decision.decision_id,
            "items": out_items,
            "personalized": person.personalized,
            "strategy": strategy,
            "explanation": {
                "reason": person.reason,
                "candidates": len(pool.ids),
                "after_rules": after_rules,
                "removed": removed,
                "model_version": decision.model_version,
                "features": list(FEATURES[1:]),
                "data_categories": decision.data_categories,
            },
            "experiment": (
                {"name": decision.experiment, "variant": decision.variant}
                if assigned is not None
                else None
            ),
        }

    def _shortlist(
        self,
        pool: _Pool,
        cols: Columns,
        placement: Placement,
        signals: PersonSignals | None,
        item_id: str | None,
        now: float,
        ranker: LinearThompson,
        k: int,
        rows: NDArray[np.intp],
    ) -> tuple[NDArray[np.intp], dict[str, int], int, NDArray[np.float64], list[Candidate]]:
        """Rules, features and ranking: the kept positions, what each rule removed, how
        many were kept, their features and the ranked shortlist (with the featured items).

        Ids are read for the shortlist only, not for every kept candidate (a list of ~500
        built for ~30 reads), and scores are rounded by numpy: Python's ``round`` with
        digits formats each float (~0.5 µs each, 60 a decision).
        """
        keep, removed = _eligible(pool.ids, pool.pos, rows, cols, placement.rules, now, signals)
        kept = np.flatnonzero(keep)
        ids = pool.ids
        kept_rows = rows[kept]
        x = self._features(pool, kept, kept_rows, signals, item_id)
        order, scores, propensity = ranker.rank(x, k * 3, self._rng, explore=placement.exploration)
        shown_rows = kept_rows[order]
        ranked = [
            Candidate(
                item_id=ids[position],
                row=index,
                catalog_row=catalog_row,
                category=category,
                score=score,
                propensity=p,
            )
            for index, position, catalog_row, category, score, p in zip(
                order.tolist(),
                kept[order].tolist(),
                shown_rows.tolist(),
                cols.category[shown_rows].tolist(),
                scores.round(6).tolist(),
                propensity.round(4).tolist(),
                strict=True,
            )
        ]
        featured = set(placement.rules.pinned) | set(placement.rules.promoted)
        if featured:
            in_ranked = {c.item_id for c in ranked}
            at: list[int] = []  # the featured candidates' places among the kept ones
            for other in featured:
                p = pool.pos.get(other)
                if p is None or other in in_ranked or ids[p] != other:
                    continue
                i = int(np.searchsorted(kept, p))  # kept is ascending
                if i < len(kept) and kept[i] == p:
                    at.append(i)
            for i in sorted(at):  # in candidate order, as they came
                at_row = int(kept_rows[i])
                ranked.append(
                    Candidate(
                        item_id=ids[kept[i]],
                        row=i,
                        catalog_row=at_row,
                        category=int(cols.category[at_row]),
                    )
                )
        return kept, removed, len(kept), x, ranked

    async def _assign(
        self, request: DecideRequest, person: PersonView, gpc: bool, now: float
    ) -> tuple[Assignment, str] | None:
        """The arm of the placement's running experiment and the unit it was drawn for.

        Only people whose personalization consent is given take part: their answer could
        differ by arm. A known person's unit is their profile id; a visitor not known yet
        is assigned by the profile id their first event will create, which the processor
        derives from the event's highest-priority identifier: the user id when there is
        one, else the anonymous id (consent read from the ledger under the request's
        identifiers and from its own signals).
        """
        assert self.experiments is not None
        if self.experiments.running(request.placement, now) is None:
            return None
        if person.profile_id is not None:
            if not person.personalized:
                return None
            unit = person.profile_id
        else:
            would_be = None if self.visitor_unit is None else self.visitor_unit(request.user)
            if would_be is None:
                return None
            subjects = [f"{k}:{v}" for k, v in request.user.items() if v not in (None, "")]
            verdict = await self._consent(subjects, request.context, gpc)
            if not verdict.allowed:
                return None
            unit = would_be
        arm = self.experiments.assign(request.placement, unit, now)
        return None if arm is None else (arm, unit)

    def _variant_placement(self, placement: Placement, arm: Assignment) -> Placement:
        """The placement as the arm's variant changes it (built once per arm)."""
        assert arm.variant is not None
        key = (placement.name, arm.experiment.name, arm.arm)
        found = self._variants.get(key)
        if found is None:
            found = self._variants[key] = with_variant(placement, arm.variant)
        return found

    async def _person(self, request: DecideRequest, gpc: bool) -> PersonView:
        identifiers = {str(k): str(v) for k, v in request.user.items() if v not in (None, "")}
        if not identifiers:
            return PersonView(None, None, False, "unknown_person")
        profile_id, subjects = await self._find_profile(identifiers)
        if profile_id is None:
            return PersonView(None, None, False, "unknown_person")
        verdict = await self._consent(subjects, request.context, gpc)
        if not verdict.allowed:
            return PersonView(profile_id, None, False, verdict.reason)
        signals = await self._person_signals(profile_id)
        return PersonView(profile_id, signals, True, verdict.reason)

    def _candidates(
        self,
        request: DecideRequest,
        placement: Placement,
        signals: PersonSignals | None,
        item_id: str | None,
        category: str | None,
        region: str | None,
        now: float,
    ) -> _Pool:
        pool = _Pool()
        if request.candidates is not None:
            pool.add_all("request", request.candidates[:1000])
            return pool
        pool.add(
            "featured", [(i, 0.0) for i in (*placement.rules.pinned, *placement.rules.promoted)]
        )
        if item_id is not None:
            pool.add("co_visitation", self.items.neighbours(item_id, "co_visitation", 50))
            pool.add("bought_together", self.items.neighbours(item_id, "bought_together", 30))
        if signals is not None:
            for cart_item in list(signals.cart)[:5]:
                pool.add("bought_together", self.items.neighbours(cart_item, "bought_together", 20))
            for seen in signals.recent[:5]:
                pool.add("co_visitation", self.items.neighbours(seen, "co_visitation", 20))
            # what the person said they like (preference centre), then what they showed
            ranked = sorted(signals.categories.items(), key=lambda kv: -kv[1])
            liked = dict.fromkeys([*signals.interests[:3], *(c for c, _ in ranked[:3])])
            for category_name in liked:
                pool.add("category_affinity", self.items.top(30, category=category_name, now=now))
        if category is not None:
            pool.add("popular_in_category", self.items.top(50, category=category, now=now))
        if region is not None:
            pool.add("popular_in_region", self.items.top(50, region=region, now=now))
        if placement.strategy in ("personalized", "popular") or len(pool.ids) < 50:
            pool.add("popular", self.items.top(200, now=now))
        pool.add("fresh", self.items.fresh(20, now))
        if len(pool.ids) < 20:  # a cold system: fall back to the catalog itself
            pool.add("catalog", [(i, 0.0) for i in list(self.catalog.items)[:200]])
        return pool

    def _features(
        self,
        pool: _Pool,
        kept: NDArray[np.intp],
        rows: NDArray[np.intp],
        signals: PersonSignals | None,
        item_id: str | None,
    ) -> NDArray[np.float64]:
        n = len(kept)
        x = np.zeros((n, len(FEATURES)))
        if n == 0:
            return x
        x[:, 0] = 1.0
        strength, used = pool.strength, pool.used  # a source nobody filled is all zeros
        popular = [i for i in _POPULAR if i in used]
        if len(popular) == 1:
            x[:, 1] = np.log1p(strength[popular[0], kept])
        elif popular:
            x[:, 1] = np.log1p(strength[popular][:, kept].max(axis=0))
        for column, source in _LOGGED:
            if source in used:
                x[:, column] = np.log1p(strength[source, kept])
        if _SOURCE["fresh"] in used:
            x[:, 6] = strength[_SOURCE["fresh"], kept] > 0
        cols = self.catalog.columns
        if item_id is not None:
            x[:, 7] = cols.similarity(cols.row.get(item_id, cols.unknown), rows)
        if signals is not None:
            x[:, 4] = cols.codes(signals.categories, cols.categories)[cols.category[rows]]
            x[:, 5] = cols.codes(signals.brands, cols.brands)[cols.brand[rows]]
            seen = [p for item in signals.recent if (p := pool.pos.get(item)) is not None]
            if seen:  # kept is ascending: find each seen position among the kept ones
                wanted = np.asarray(seen, dtype=np.intp)
                at = np.minimum(np.searchsorted(kept, wanted), len(kept) - 1)
                x[at[kept[at] == wanted], 8] = 1.0
        filled = [column for column, source in _LOGGED if source in used]
        for column in [1, *filled] if popular else filled:  # each to 0..1
            peak = x[:, column].max()
            if peak > 0:
                x[:, column] /= peak
        return x

    def learn(self, decision: Decision, item_id: str, reward: float) -> bool:
        """Feedback for one shown item of a logged decision; return whether it was learned."""
        rows = decision.context.get("x")
        if not isinstance(rows, list) or item_id not in decision.items:
            return False
        index = decision.items.index(item_id)
        if index >= len(rows):
            return False
        key = decision.context.get("ranker")  # a variant with a model of its own
        ranker = self.ranker(key if isinstance(key, str) else decision.placement)
        ranker.update(np.asarray(rows[index], dtype=np.float64), reward)
        return True

    def decision_items(self, decision_id: str) -> list[str] | None:
        decision = self.recent.get(decision_id)
        return list(decision.items) if decision is not None else None

    def feedback(self, events: Iterable[FeedbackLike]) -> None:
        """Learn from exposures, clicks and conversions on logged decisions.

        A click or a conversion on a shown item is a reward of 1 at once; an item exposed
        and not clicked within ``attribution_window`` seconds counts 0 (see :meth:`settle`).
        """
        for fb in events:
            self.feedback_seen[fb.kind] = self.feedback_seen.get(fb.kind, 0) + 1
            decision = self.recent.get(fb.decision_id)
            if decision is None:
                continue
            if fb.kind == "exposure":
                shown = fb.item_ids or tuple(decision.items)
                self._exposed.setdefault(fb.decision_id, (fb.at, shown, set()))
                continue
            pending = self._exposed.get(fb.decision_id)
            for item_id in fb.item_ids:
                if pending is not None:
                    if item_id in pending[2]:
                        continue
                    pending[2].add(item_id)
                if self.learn(decision, item_id, 1.0):
                    self.feedback_seen["learned"] += 1

    def settle(self, now: float) -> int:
        """Count unclicked exposed items as 0 once their window passed; return how many."""
        learned = 0
        for decision_id, (at, shown, clicked) in list(self._exposed.items()):
            if now - at < self.attribution_window:
                continue
            del self._exposed[decision_id]
            decision = self.recent.get(decision_id)
            if decision is None:
                continue
            for item_id in shown:
                if item_id not in clicked and self.learn(decision, item_id, 0.0):
                    learned += 1
        self.feedback_seen["learned"] += learned
        return learned

    def _log_decision(self, decision: Decision) -> None:
        self.recent.put(decision)
        self._pending.append(decision)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._decisions.put_decisions(batch)
            except Exception:  # the decision log must never fail a decision already answered
                _log.exception("decision_log_failed", decisions=len(batch))

    async def forget(self, profile_ids: Iterable[str]) -> int:
        """Drop these profiles' decisions from memory (a person's erasure): the recent ones,
        those awaiting their attribution window, and those not yet written (the write in
        flight is awaited first, so none reaches the decision log after this returns).

        Returns:
            how many decisions were dropped.
        """
        ids = set(profile_ids)
        if self._flushing is not None and not self._flushing.done():
            await self._flushing
        self._pending = [d for d in self._pending if d.profile_id not in ids]
        gone = self.recent.forget(ids)
        for decision_id in gone:
            self._exposed.pop(decision_id, None)
        return len(gone)

    async def aclose(self) -> None:
        if self._flushing is not None:
            await self._flushing
        await self._flush()


_SOURCES: Final = (
    "request",
    "featured",
    "co_visitation",
    "bought_together",
    "category_affinity",
    "popular_in_category",
    "popular_in_region",
    "popular",
    "fresh",
    "catalog",
)
_SOURCE: Final = {name: i for i, name in enumerate(_SOURCES)}
#: the sources whose strongest strength is the popularity feature
_POPULAR: Final = tuple(
    _SOURCE[name] for name in ("popular", "popular_in_category", "popular_in_region", "request")
)
#: feature column → the source whose log strength it is
_LOGGED: Final = ((2, _SOURCE["co_visitation"]), (3, _SOURCE["bought_together"]))
_CAP: Final = 1000


class _Pool:
    """Candidates in arrival order with a strength per source, as one array."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.strength = np.zeros((len(_SOURCES), _CAP))
        #: the sources with a strength above 0 somewhere (the other rows are all zeros)
        self.used: set[int] = set()

    def add(self, source: str, pairs: Iterable[tuple[str, float]]) -> None:
        index = _SOURCE[source]
        row = self.strength[index]
        ids, pos = self.ids, self.pos
        for item_id, value in pairs:
            p = pos.get(item_id)
            if p is None:
                if len(ids) >= _CAP:
                    continue
                p = pos[item_id] = len(ids)
                ids.append(item_id)
            if value > row[p]:
                row[p] = value
                self.used.add(index)

    def add_all(self, source: str, item_ids: Iterable[str]) -> None:
        """Start the pool from a list (the request's own candidates): no per-item work."""
        given = list(item_ids)
        pos = dict(zip(given, range(len(given)), strict=True))  # all it takes if ids are unique
        if len(pos) < len(given) or len(given) > _CAP:
            # a dict keeps keys in first-insertion order: the ids deduplicated, in request order
            given = list(pos)[:_CAP]
            pos = dict(zip(given, range(len(given)), strict=True))
        self.ids, self.pos = given, pos
        self.strength[_SOURCE[source], : len(self.ids)] = 1.0
        if self.ids:
            self.used.add(_SOURCE[source])

    def drop(self, item_id: str) -> None:
        p = self.pos.get(item_id)
        if p is not None:
            self.strength[:, p] = 0.0
            self.ids[p] = ""  # keeps positions stable; "" is never in the catalog

    def sources_at(self, positions: NDArray[np.intp]) -> list[dict[str, float]]:
        """Each position's sources and their strengths (one array read for them all)."""
        block = self.strength[:, positions]
        out: list[dict[str, float]] = [{} for _ in range(len(positions))]
        source, at = np.nonzero(block > 0)  # by source, so each dict keeps _SOURCES' order
        for s, p, value in zip(
            source.tolist(), at.tolist(), block[source, at].tolist(), strict=True
        ):
            out[p][_SOURCES[s]] = value
        return out


def _eligible(
    ids: list[str],
    pos: dict[str, int],
    rows: NDArray[np.intp],
    cols: Columns,
    rules: PlacementRules,
    now: float,
    signals: PersonSignals | None,
) -> tuple[NDArray[np.bool_], dict[str, int]]:
    """The candidates the placement's rules allow, and how many each rule removed."""
    removed: dict[str, int] = {}
    left = len(ids)  # candidates still kept

    def apply(name: str, keep: NDArray[np.bool_], ok: NDArray[np.bool_]) -> NDArray[np.bool_]:
        nonlocal left
        out: NDArray[np.bool_] = keep & ok
        now_left = int(np.count_nonzero(out))
        if now_left < left:
            removed[name] = left - now_left
        left = now_left
        return out

    keep = apply("not_in_catalog", np.ones(len(ids), dtype=bool), rows != cols.unknown)
    keep = apply("unavailable", keep, cols.available_at(rows, now))
    if rules.types:
        kinds = {"product": 0, "offer": 1, "content": 2}
        allowed = [kinds.get(t, 3) for t in rules.types]
        keep = apply("placement_type", keep, np.isin(cols.kind[rows], allowed))
    if rules.categories:
        codes = [cols.categories[c] for c in rules.categories if c in cols.categories]
        keep = apply("placement_category", keep, np.isin(cols.category[rows], codes))
    if signals is not None:

        def without(found: Iterable[str]) -> NDArray[np.bool_]:
            ok = np.ones(len(ids), dtype=bool)
            for item_id in found:  # iterate the person's few items, not the candidates
                p = pos.get(item_id)
                if p is not None:
                    ok[p] = False
            return ok

        if signals.excluded_items or signals.excluded_categories or signals.excluded_brands:
            ok = without(signals.excluded_items)
            cats = [cols.categories[c] for c in signals.excluded_categories if c in cols.categories]
            if cats:
                ok &= ~np.isin(cols.category[rows], cats)
            brands = [cols.brands[b] for b in signals.excluded_brands if b in cols.brands]
            if brands:
                ok &= ~np.isin(cols.brand[rows], brands)
            keep = apply("excluded_by_preference", keep, ok)
        if rules.exclude_purchased and signals.purchased:
            keep = apply("purchased", keep, without(signals.purchased))
        if rules.exclude_cart and signals.cart:
            keep = apply("in_cart", keep, without(signals.cart))
        cap = rules.frequency_cap
        if cap is not None and signals.impressions:
            capped = (i for i, shown in signals.impressions.items() if shown >= cap)
            keep = apply("frequency_cap", keep, without(capped))
    return keep, removed


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _reason(c: Candidate, item: Item, signals: PersonSignals | None) -> str:
    s = c.sources
    if "bought_together" in s:
        return "often bought together with what you are looking at"
    if "co_visitation" in s:
        return "people who viewed this also viewed"
    if signals is not None and item.category in signals.interests:
        return f"you told us you like {item.category}"
    if signals is not None and item.category in signals.categories:
        return f"matches your interest in {item.category}"
    if "popular_in_category" in s:
        return f"popular in {item.category}"
    if "popular_in_region" in s:
        return "popular in your region"
    if "fresh" in s:
        return "new arrival"
    if "request" in s:
        return "ranked from the candidates you sent"
    return "popular right now"


#: variant parameters that are placement fields; the others are its rules
_PLACEMENT_FIELDS: Final = frozenset({"k", "channel"})


def with_variant(placement: Placement, variant: Variant) -> Placement:
    """``placement`` with what ``variant`` changes: strategy, exploration, other settings."""
    params = dict(variant.parameters)
    rules = {k: v for k, v in params.items() if k not in _PLACEMENT_FIELDS}
    changed = msgspec.structs.replace(
        placement,
        strategy=variant.strategy or placement.strategy,
        exploration=placement.exploration if variant.exploration is None else variant.exploration,
        k=int(params.get("k", placement.k)),
        channel=str(params.get("channel", placement.channel)),
    )
    if rules:
        merged = {**msgspec.to_builtins(placement.rules), **rules}
        changed = msgspec.structs.replace(
            changed, rules=msgspec.convert(merged, PlacementRules, strict=False)
        )
    return changed


def profile_identifiers(user: Mapping[str, str]) -> list[Identifier]:
    """``{"user_id": "42", "anonymous_id": "a"}`` → identifiers, in the caller's order."""
    return [Identifier(k, v) for k, v in user.items() if v]
