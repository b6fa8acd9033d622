"""KPI report numbers in memory: the reference for the report-store contract."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from segue.core.model import REPORT_METRICS, Covariate, ReportBatch, ReportCell, ReportRow
from segue.errors import StaleState
from segue.storage._report_sql import fits as _fits

__all__ = ["MemoryReportStore"]

_Key = tuple[str, str, str, str, str]  # placement, experiment, variant, unit, day


def _matches(row: ReportRow | Covariate, placement: str | None, experiment: str | None) -> bool:
    return (placement is None or row.placement == placement) and (
        experiment is None or row.experiment == experiment
    )


def _add(into: ReportRow | ReportCell, row: ReportRow) -> None:
    for name in REPORT_METRICS:
        setattr(into, name, getattr(into, name) + getattr(row, name))


class MemoryReportStore:
    """Rows by (placement, experiment, variant, unit, day); everything else in dicts."""

    def __init__(self) -> None:
        self._rows: dict[_Key, ReportRow] = {}
        self._covariates: dict[tuple[str, str, str], Covariate] = {}
        self._people: dict[str, bytes] = {}
        self._checkpoints: dict[str, int] = {}
        self._budgets: dict[str, tuple[float, float]] = {}

    async def open(self) -> None:
        return None

    async def checkpoint(self, consumer: str) -> int:
        return self._checkpoints.get(consumer, 0)

    async def people(self, keys: Iterable[str]) -> dict[str, bytes]:
        return {k: self._people[k] for k in set(keys) if k in self._people}

    async def commit(self, batch: ReportBatch, consumer: str, after: int, offset: int) -> None:
        if self._checkpoints.get(consumer, 0) != after:
            raise StaleState(f"reports checkpoint of {consumer!r} moved past {after}")
        for row in batch.rows:
            key = (row.placement, row.experiment, row.variant, row.unit, row.day)
            stored = self._rows.get(key)
            if stored is None:
                stored = self._rows[key] = ReportRow(
                    placement=row.placement,
                    experiment=row.experiment,
                    variant=row.variant,
                    unit=row.unit,
                    day=row.day,
                )
            _add(stored, row)
        for cov in batch.covariates:
            self._covariates.setdefault((cov.placement, cov.experiment, cov.unit), cov)
        for person in batch.drop_people:
            self._people.pop(person, None)
        self._people.update(batch.people)
        self._checkpoints[consumer] = offset

    async def cells(
        self, placement: str | None, experiment: str | None, first_day: str, last_day: str
    ) -> list[ReportCell]:
        cells: dict[tuple[str, str, str, str], ReportCell] = {}
        for row in self._rows.values():
            if not (_matches(row, placement, experiment) and first_day <= row.day <= last_day):
                continue
            key = (row.placement, row.experiment, row.variant, row.day)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = ReportCell(
                    placement=row.placement,
                    experiment=row.experiment,
                    variant=row.variant,
                    day=row.day,
                )
            cell.visitors += 1
            _add(cell, row)
        return [cells[k] for k in sorted(cells)]

    async def units(
        self,
        placement: str | None,
        experiment: str | None,
        first_day: str,
        last_day: str,
        *,
        by_day: bool,
    ) -> list[ReportRow]:
        out: dict[_Key, ReportRow] = {}
        for key, row in self._rows.items():
            if not (_matches(row, placement, experiment) and first_day <= row.day <= last_day):
                continue
            if by_day:
                out[key] = msgspec.structs.replace(row)
                continue
            total_key = (*key[:4], "")
            total = out.get(total_key)
            if total is None:
                total = out[total_key] = ReportRow(
                    placement=row.placement,
                    experiment=row.experiment,
                    variant=row.variant,
                    unit=row.unit,
                    day="",
                )
            _add(total, row)
        return [out[k] for k in sorted(out)]

    async def covariates(self, placement: str | None, experiment: str | None) -> list[Covariate]:
        found = [c for c in self._covariates.values() if _matches(c, placement, experiment)]
        return sorted(found, key=lambda c: (c.placement, c.experiment, c.unit))

    async def spend(
        self, consumer: str, epsilon: float, delta: float, max_epsilon: float, max_delta: float
    ) -> tuple[bool, float, float]:
        spent_eps, spent_delta = self._budgets.get(consumer, (0.0, 0.0))
        if not _fits(spent_eps + epsilon, max_epsilon, spent_delta + delta, max_delta):
            return False, spent_eps, spent_delta
        self._budgets[consumer] = (spent_eps + epsilon, spent_delta + delta)
        return True, *self._budgets[consumer]

    async def spent(self, consumer: str) -> tuple[float, float]:
        return self._budgets.get(consumer, (0.0, 0.0))

    async def of_units(self, units: Sequence[str]) -> tuple[list[ReportRow], list[Covariate]]:
        wanted = set(units)
        rows = [msgspec.structs.replace(r) for k, r in sorted(self._rows.items()) if k[3] in wanted]
        covariates = [c for k, c in sorted(self._covariates.items()) if k[2] in wanted]
        return rows, covariates

    async def erase(self, units: Sequence[str], people: Sequence[str]) -> dict[str, int]:
        gone = set(units)
        rows = [k for k in self._rows if k[3] in gone]
        for key in rows:
            del self._rows[key]
        covariates = [k for k in self._covariates if k[2] in gone]
        for cov_key in covariates:
            del self._covariates[cov_key]
        dropped = sum(self._people.pop(k, None) is not None for k in set(people))
        return {"rows": len(rows), "covariates": len(covariates), "people": dropped}

    async def aclose(self) -> None:
        return None
