"""Attribution: a person's events, in log order, folded into report rows (pure).

What counts, and where:

- **Exposure**: a feedback event that says a decision was shown (``Decision Viewed``,
  ``Promotion Viewed``, ``Product List Viewed``, ``Impression`` with ``decision_id``). One
  impression per decision however often it is reported, in the decision's cell: its
  placement, experiment and arm, under the unit it was assigned by, on the UTC day of the
  exposure. Every later number that follows an exposure goes to that exposure's row.
- **Click**: ``Product Clicked`` or ``Promotion Clicked`` with the ``decision_id`` of an
  exposed decision, within the attribution window: at most one per decision. A click on a
  decision that was never reported shown counts its exposure first (it was seen).
- **Add-to-cart** (``Product Added``) and **conversion** (``Order Completed``, with its
  revenue): within the attribution window after an exposure of the same person, counted
  once per (placement, experiment) the person was exposed to, for the most recent exposure
  there before it in time whose window holds it (last touch). No ``decision_id`` is needed.
  An exposure folded after an add or order it precedes (it arrived late) takes it over:
  it is counted for the exposure, or moved to it from an earlier one, never twice.
- **Sessions** start with a page or screen view and end after ``session_timeout`` seconds
  without any event. A session counts once for each cell the person was exposed to during
  it (on the day of the first exposure there), with all its pages: it is a **bounce**
  while it has one page view; **time on page** is the time from a page view to the next
  one in the session (the last page's time is unknown, as in every web analytics tool). A
  page that arrives late is put where its time puts it (between its neighbours, or first),
  so the numbers are those of time order; one earlier than the session's first page by
  more than the timeout belongs to an earlier session and is left out.
- **Pre-period covariate** (CUPED): the person's orders and revenue before (in time) the
  unit's first exposure in an experiment that is folded; orders folded earlier but made
  after it are not in it. It is kept once: an exposure folded later does not change it,
  even one that happened earlier.

The state kept per person is small and bounded: the newest :data:`MAX_SHOWN` exposures,
the newest :data:`_TOUCHES_PER_CELL` exposures in each of at most :data:`_MAX_CELLS`
(placement, experiment) pairs, the newest :data:`_MAX_OUTCOMES` adds and orders with the
exposures they count for, the current session and the person's order counters. What falls
out of these lists is forgotten: an exposure older than every one kept in its pair, or an
add or order older than every one kept, no longer takes part when something arrives late.
Nothing expires by the clock: events may arrive late or out of time order (an app
that was offline), and every window is checked against the event's own time when it is
folded, so a replay of the log gives the same rows.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import msgspec

from segue.core.events import Event, Page, Screen, Track
from segue.core.model import Covariate, ReportRow
from segue.processor.behaviour import CLICK_EVENTS, EXPOSURE_EVENTS

__all__ = [
    "MAX_SHOWN",
    "Arm",
    "Attribution",
    "PersonState",
    "day_of",
    "decode_person",
    "encode_person",
    "merge_people",
    "order_revenue",
]

#: exposed decisions kept per person (the most recently folded), so that an impression and a
#: click count once per decision; one reported again after this many others counts again
MAX_SHOWN: Final = 200
#: sessions count for at most this many cells (placements × experiments) each
_MAX_CELLS: Final = 50
#: page view times kept per session, to place late pages between their neighbours
_MAX_PAGES: Final = 64
#: exposures kept per (placement, experiment), newest first in time, for last touch
_TOUCHES_PER_CELL: Final = 8
#: adds and orders kept per person (the newest in time), for exposures that arrive late
_MAX_OUTCOMES: Final = 32
ADD_EVENT: Final = "Product Added"
ORDER_EVENT: Final = "Order Completed"


class Arm(NamedTuple):
    """Where a decision's numbers go: its placement, experiment and arm, and its unit.

    ``experiment`` and ``variant`` are ``""`` outside any experiment. ``window`` is the
    attribution window the decision was made under (0: the configured one), so a process
    that folds the log needs no copy of the experiments' configuration, and changing a
    window applies to new exposures only.
    """

    placement: str
    experiment: str
    variant: str
    unit: str
    window: float = 0.0


class _Shown(msgspec.Struct, array_like=True):
    decision_id: str
    arm: Arm
    day: str
    at: float
    clicked: bool = False


class _Touch(msgspec.Struct, array_like=True):
    arm: Arm
    day: str
    at: float

    @property
    def cell(self) -> tuple[str, str]:
        return self.arm.placement, self.arm.experiment


class _Outcome(msgspec.Struct, array_like=True):
    """An add-to-cart or an order, and the exposures (one per cell) it is counted for."""

    at: float
    order: bool
    revenue: float = 0.0
    credited: list[_Touch] = []


class _Session(msgspec.Struct, array_like=True):
    #: the time of the session's earliest page view
    start: float
    last: float
    pages: int
    last_page_at: float
    timed: int = 0
    seconds: float = 0.0
    squares: float = 0.0
    #: the cells this session counts for: (arm, day of the exposure that attached it), one
    #: per (placement, experiment, variant, unit)
    cells: list[tuple[Arm, str]] = []
    #: the times of the newest page views, ascending (at most :data:`_MAX_PAGES`), so that a
    #: page arriving late can be put between its neighbours; a trailing field with a default,
    #: so state stored before it existed still decodes (then only ``last_page_at`` is known)
    page_times: list[float] = []


class PersonState(msgspec.Struct):
    """What the reports consumer remembers of one person between events.

    Encoded as a map, so fields added with a default (``outcomes``) leave state stored
    before them readable.
    """

    shown: list[_Shown] = []
    #: recent exposures, ascending by time (see :func:`_keep_touches`)
    touches: list[_Touch] = []
    session: _Session | None = None
    orders: int = 0
    revenue: float = 0.0
    #: recent adds and orders, ascending by time (at most :data:`_MAX_OUTCOMES`)
    outcomes: list[_Outcome] = []


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(PersonState).decode


def encode_person(state: PersonState) -> bytes:
    return _encode(state)


def decode_person(data: bytes | None) -> PersonState:
    return _decode(data) if data else PersonState()


def day_of(at: float) -> str:
    """The UTC date of an epoch time, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def order_revenue(properties: Mapping[str, Any]) -> float:
    """An order's revenue as the Segment spec has it: ``revenue``, else ``total``, else
    ``value``, else the sum of ``price × quantity`` over ``products``."""
    for key in ("revenue", "total", "value"):
        value = _number(properties.get(key))
        if value is not None:
            return value
    total = 0.0
    products = properties.get("products")
    if isinstance(products, list):
        for product in products[:500]:
            if isinstance(product, dict):
                price = _number(product.get("price")) or 0.0
                quantity = _number(product.get("quantity"))
                total += price * (1.0 if quantity is None else quantity)
    return total


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def merge_people(survivor: PersonState, others: Iterable[PersonState]) -> PersonState:
    """One person out of several (their profiles merged): exposures, recent adds and orders
    and order counters add up (the newest kept), and the latest session wins."""
    for other in others:
        known = {s.decision_id for s in survivor.shown}
        survivor.shown += [s for s in other.shown if s.decision_id not in known]
        survivor.shown.sort(key=lambda s: s.at)
        del survivor.shown[:-MAX_SHOWN]
        survivor.touches = _keep_touches(sorted(survivor.touches + other.touches, key=_at))
        survivor.outcomes = sorted(survivor.outcomes + other.outcomes, key=_at)
        del survivor.outcomes[:-_MAX_OUTCOMES]
        if other.session is not None and (
            survivor.session is None or survivor.session.last < other.session.last
        ):
            survivor.session = other.session
        survivor.orders += other.orders
        survivor.revenue += other.revenue
    return survivor


def _at(item: _Touch | _Outcome) -> float:
    return item.at


def _keep_touches(touches: list[_Touch]) -> list[_Touch]:
    """The newest :data:`_TOUCHES_PER_CELL` of each cell, of the :data:`_MAX_CELLS` cells
    exposed last, in time order (``touches`` is in time order)."""
    kept: dict[tuple[str, str], int] = {}
    out: list[_Touch] = []
    for touch in reversed(touches):
        n = kept.get(touch.cell, 0)
        if n >= _TOUCHES_PER_CELL or (n == 0 and len(kept) >= _MAX_CELLS):
            continue
        kept[touch.cell] = n + 1
        out.append(touch)
    out.reverse()
    return out


class _Rows:
    """Report deltas of one batch, one row per (arm, day)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Arm, str], ReportRow] = {}

    def get(self, arm: Arm, day: str) -> ReportRow:
        row = self.rows.get((arm, day))
        if row is None:
            row = self.rows[(arm, day)] = ReportRow(
                placement=arm.placement,
                experiment=arm.experiment,
                variant=arm.variant,
                unit=arm.unit,
                day=day,
            )
        return row


class Attribution:
    """Folds events into report rows.

    Args:
        windows: experiment name → its attribution window in seconds.
        default_window: the window of decisions outside any experiment (and of unknown
            experiments: one ended and removed from the configuration).
        session_timeout: seconds of inactivity that end a session.
    """

    def __init__(
        self,
        windows: Mapping[str, float] | None = None,
        *,
        default_window: float = 86400.0,
        session_timeout: float = 1800.0,
    ) -> None:
        self.windows = dict(windows or {})
        self.default_window = default_window
        self.session_timeout = session_timeout

    def window(self, arm: Arm) -> float:
        """The attribution window of an exposure: its decision's, else the configured one."""
        return arm.window or self.windows.get(arm.experiment, self.default_window)

    def fold(
        self,
        people: dict[str, PersonState],
        events: Iterable[tuple[str, Event, float]],
        arm_of: Callable[[str], Arm | None],
    ) -> tuple[list[ReportRow], list[Covariate]]:
        """Fold (person key, event, epoch time) in log order into ``people`` (changed in
        place; a missing person starts empty).

        Args:
            people: person key → state.
            events: the events of a batch, each with the person it belongs to.
            arm_of: decision id → where its numbers go (None: an unknown decision); an
                arm without a unit (a decision outside any experiment for somebody decide
                did not know) is counted under the person.

        Returns:
            the rows to add and the covariates of units seen for the first time.
        """
        rows = _Rows()
        covariates: dict[tuple[str, str, str], Covariate] = {}
        for key, event, at in events:
            person = people.get(key)
            if person is None:
                person = people[key] = PersonState()
            self._session_event(person, event, at, rows)
            if not isinstance(event, Track):
                continue
            name = event.event
            props = event.properties
            decision_id = props.get("decision_id")
            feedback = name in EXPOSURE_EVENTS or name in CLICK_EVENTS
            if feedback and isinstance(decision_id, str) and decision_id:
                arm = arm_of(decision_id)
                if arm is not None and not arm.unit:
                    arm = arm._replace(unit=key)
                shown = self._expose(person, decision_id, at, arm, rows, covariates)
                if shown is not None and name in CLICK_EVENTS:
                    self._click(shown, at, rows)
            if name in (ADD_EVENT, ORDER_EVENT):
                order = name == ORDER_EVENT
                outcome = _Outcome(at, order, order_revenue(props) if order else 0.0)
                for touch in self._touching(person, at):
                    _credit(rows, touch, outcome, 1)
                    outcome.credited.append(touch)
                bisect.insort(person.outcomes, outcome, key=_at)
                del person.outcomes[:-_MAX_OUTCOMES]
                if order:
                    person.orders += 1
                    person.revenue += outcome.revenue
        return list(rows.rows.values()), list(covariates.values())

    # --- exposures and clicks -----------------------------------------------------------
    def _expose(
        self,
        person: PersonState,
        decision_id: str,
        at: float,
        arm: Arm | None,
        rows: _Rows,
        covariates: dict[tuple[str, str, str], Covariate],
    ) -> _Shown | None:
        """Count an exposure once per decision; return it (None: an unknown decision)."""
        for shown in person.shown:
            if shown.decision_id == decision_id:
                return shown  # reported twice: one impression
        if arm is None:
            return None
        day = day_of(at)
        shown = _Shown(decision_id, arm, day, at)
        person.shown.append(shown)
        rows.get(arm, day).impressions += 1
        touch = _Touch(arm, day, at)
        bisect.insort(person.touches, touch, key=_at)
        person.touches = _keep_touches(person.touches)
        self._take_over(person, touch, rows)
        cov_key = (arm.placement, arm.experiment, arm.unit)
        if arm.experiment and cov_key not in covariates:
            # orders folded before this exposure but made after it are not "before" it
            later = [o for o in person.outcomes if o.order and o.at >= at]
            covariates[cov_key] = Covariate(
                placement=arm.placement,
                experiment=arm.experiment,
                unit=arm.unit,
                orders=person.orders - len(later),
                revenue=person.revenue - sum(o.revenue for o in later),
            )
        session = person.session
        # once per arm and unit, on the day of its first exposure in the session: a session
        # across midnight with an exposure on each side is one session, not two
        if (
            session is not None
            and len(session.cells) < _MAX_CELLS
            and all(cell[:4] != arm[:4] for cell, _ in session.cells)
        ):
            session.cells.append((arm, day))
            row = rows.get(arm, day)
            row.sessions += 1
            row.bounces += session.pages == 1
            row.timed_pages += session.timed
            row.time_on_page_s += session.seconds
            row.time_on_page_sq += session.squares
        if len(person.shown) > MAX_SHOWN:
            del person.shown[:-MAX_SHOWN]
        return shown

    def _click(self, shown: _Shown, at: float, rows: _Rows) -> None:
        """A click on an exposed decision: once, within the window (a click on a decision
        never reported shown was exposed just before, by :meth:`_expose`)."""
        if shown.clicked or at - shown.at > self.window(shown.arm):
            return
        shown.clicked = True
        rows.get(shown.arm, shown.day).clicks += 1

    def _touching(self, person: PersonState, at: float) -> list[_Touch]:
        """The person's last exposure before ``at`` whose window holds it, per (placement,
        experiment)."""
        last: dict[tuple[str, str], _Touch] = {}
        for touch in person.touches:  # in time order: a later one replaces an earlier one
            if 0.0 <= at - touch.at <= self.window(touch.arm):
                last[touch.cell] = touch
        return list(last.values())

    def _take_over(self, person: PersonState, touch: _Touch, rows: _Rows) -> None:
        """The adds and orders a late exposure is the last touch of in its cell: counted for
        it, or moved to it from the earlier exposure they were counted for."""
        end = touch.at + self.window(touch.arm)
        for outcome in person.outcomes:
            if not touch.at <= outcome.at <= end:
                continue
            i = next((i for i, t in enumerate(outcome.credited) if t.cell == touch.cell), None)
            if i is None:
                outcome.credited.append(touch)
            elif outcome.credited[i].at < touch.at:
                _credit(rows, outcome.credited[i], outcome, -1)
                outcome.credited[i] = touch
            else:
                continue  # already counted for a later exposure: that one is its last touch
            _credit(rows, touch, outcome, 1)

    # --- sessions -----------------------------------------------------------------------
    def _session_event(self, person: PersonState, event: Event, at: float, rows: _Rows) -> None:
        session = person.session
        if session is not None and at - session.last > self.session_timeout:
            session = person.session = None
        if not isinstance(event, Page | Screen):
            if session is not None and at > session.last:
                session.last = at
            return
        if session is None:
            person.session = _Session(start=at, last=at, pages=1, last_page_at=at, page_times=[at])
            return
        session.last = max(session.last, at)
        times = session.page_times
        if not times:  # stored before page times were kept: the newest page is known
            times.append(session.last_page_at)
        if at >= session.last_page_at:
            seconds = at - session.last_page_at
            self._page(session, rows, 1, seconds, seconds * seconds)
            session.last_page_at = at
            times.append(at)
            del times[:-_MAX_PAGES]
            return
        # a page that arrives late (an app that was offline): count what time order gives,
        # so the numbers do not depend on the order the log holds the pages in
        complete = len(times) == session.pages
        if at < session.start:
            if session.start - at > self.session_timeout:
                return  # in time order it belongs to an earlier session, long over
            seconds = session.start - at  # the new first page, timed up to the old first
            self._page(session, rows, 1, seconds, seconds * seconds)
            session.start = at
            if complete:
                times.insert(0, at)
                del times[:-_MAX_PAGES]
            return
        i = bisect.bisect_right(times, at)
        if i == 0:
            # before the oldest page time kept: its neighbours are unknown, so it counts as
            # a page but not as a timed one (the session's seconds are right either way)
            self._page(session, rows, 0, 0.0, 0.0)
            return
        before, after = times[i - 1], times[i]
        # it splits the gap before..after in two: one timed page more, the same seconds
        squares = (at - before) ** 2 + (after - at) ** 2 - (after - before) ** 2
        self._page(session, rows, 1, 0.0, squares)
        times.insert(i, at)
        del times[:-_MAX_PAGES]

    @staticmethod
    def _page(session: _Session, rows: _Rows, timed: int, seconds: float, squares: float) -> None:
        """One page view more in ``session``, changing its timed pages, seconds and squared
        seconds by these amounts, in the session and in every cell it counts for."""
        session.pages += 1
        session.timed += timed
        session.seconds += seconds
        session.squares += squares
        for arm, day in session.cells:
            row = rows.get(arm, day)
            row.timed_pages += timed
            row.time_on_page_s += seconds
            row.time_on_page_sq += squares
            if session.pages == 2:
                row.bounces -= 1


def _credit(rows: _Rows, touch: _Touch, outcome: _Outcome, sign: int) -> None:
    """Count an add or order for an exposure (``sign`` 1), or take it back (-1)."""
    row = rows.get(touch.arm, touch.day)
    if outcome.order:
        row.conversions += sign
        row.revenue += sign * outcome.revenue
    else:
        row.add_to_carts += sign
