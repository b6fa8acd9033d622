"""KPI report numbers on SQLite, in their own file ``<folder>/reports.db``.

A separate file from the state store, so the reports consumer never waits for the
processor's write lock (nor the processor for it). Each batch's rows, covariates and
attribution state commit in one transaction with the consumer's checkpoint, which moves only
from the position the batch was read at (compare and set): a batch is counted exactly once.
``synchronous=FULL``: a privacy budget, once charged, stays charged through a power cut.
Per-unit rows are personal data: ``secure_delete`` and a WAL truncation after an erasure
leave no copy in the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from segue.core.model import Covariate, ReportBatch, ReportCell, ReportRow
from segue.errors import StaleState
from segue.storage._report_sql import ReportSql, cell_of, row_of, where
from segue.storage._report_sql import fits as _fits
from segue.storage._sqlite_db import SqliteFile, in_chunks, transaction

__all__ = ["SqliteReportStore"]

_SQL = ReportSql("?", "INTEGER", "REAL")
_SCHEMA = (
    _SQL.rows_table
    + " WITHOUT ROWID;\n"
    + """
CREATE INDEX IF NOT EXISTS report_rows_unit ON report_rows (unit);
CREATE TABLE IF NOT EXISTS report_covariates (
    placement  TEXT NOT NULL,
    experiment TEXT NOT NULL,
    unit       TEXT NOT NULL,
    orders     INTEGER NOT NULL,
    revenue    REAL NOT NULL,
    PRIMARY KEY (placement, experiment, unit)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS report_covariates_unit ON report_covariates (unit);
CREATE TABLE IF NOT EXISTS report_people (key TEXT PRIMARY KEY, state BLOB NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS report_checkpoints (
    consumer TEXT PRIMARY KEY, position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS privacy_budgets (
    consumer TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL
) WITHOUT ROWID;
"""
)
_CHUNK = 500


class SqliteReportStore:
    """Report rows, covariates, attribution state, checkpoints and privacy budgets."""

    def __init__(self, folder: Path, *, synchronous: str = "FULL") -> None:
        self._db = SqliteFile(
            folder / "reports.db", _SCHEMA, synchronous=synchronous, secure_delete=True
        )

    async def open(self) -> None:
        await self._db.open()

    async def checkpoint(self, consumer: str) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT position FROM report_checkpoints WHERE consumer = ?", (consumer,)
            ).fetchone()
        )
        return 0 if row is None else int(row[0])

    async def people(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(keys))

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for chunk, marks in in_chunks(wanted, _CHUNK):
                sql = f"SELECT key, state FROM report_people WHERE key IN ({marks})"  # noqa: S608
                found.update(conn.execute(sql, chunk).fetchall())
            return found

        return await self._db.read(read) if wanted else {}

    async def commit(self, batch: ReportBatch, consumer: str, after: int, offset: int) -> None:
        rows = [_SQL.add_row_params(r) for r in batch.rows]
        covariates = [_SQL.add_covariate_params(c) for c in batch.covariates]

        def body(conn: sqlite3.Connection) -> None:
            found = conn.execute(
                "SELECT position FROM report_checkpoints WHERE consumer = ?", (consumer,)
            ).fetchone()
            if (0 if found is None else int(found[0])) != after:
                raise StaleState(f"reports checkpoint of {consumer!r} moved past {after}")
            conn.executemany(_SQL.add_row, rows)
            conn.executemany(_SQL.add_covariate, covariates)
            conn.executemany(
                "DELETE FROM report_people WHERE key = ?", [(k,) for k in batch.drop_people]
            )
            conn.executemany(
                "INSERT INTO report_people (key, state) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                list(batch.people.items()),
            )
            conn.execute(
                "INSERT INTO report_checkpoints (consumer, position) VALUES (?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
                (consumer, offset),
            )

        await self._db.write(lambda conn: transaction(conn, body))

    async def cells(
        self, placement: str | None, experiment: str | None, first_day: str, last_day: str
    ) -> list[ReportCell]:
        filters, params = where("?", placement, experiment)
        sql = _SQL.cells.format(mark="?", filters=filters)
        found = await self._db.read(
            lambda c: c.execute(sql, (first_day, last_day, *params)).fetchall()
        )
        return [cell_of(tuple(r)) for r in found]

    async def units(
        self,
        placement: str | None,
        experiment: str | None,
        first_day: str,
        last_day: str,
        *,
        by_day: bool,
    ) -> list[ReportRow]:
        filters, params = where("?", placement, experiment)
        template = _SQL.units_by_day if by_day else _SQL.units_total
        sql = template.format(mark="?", filters=filters)
        found = await self._db.read(
            lambda c: c.execute(sql, (first_day, last_day, *params)).fetchall()
        )
        return [row_of(tuple(r)) for r in found]

    async def covariates(self, placement: str | None, experiment: str | None) -> list[Covariate]:
        filters, params = where("?", placement, experiment)
        sql = _SQL.covariates.format(filters=filters)
        found = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return [
            Covariate(placement=p, experiment=e, unit=u, orders=int(o), revenue=float(r))
            for p, e, u, o, r in found
        ]

    async def spend(
        self, consumer: str, epsilon: float, delta: float, max_epsilon: float, max_delta: float
    ) -> tuple[bool, float, float]:
        def body(conn: sqlite3.Connection) -> tuple[bool, float, float]:
            found = conn.execute(
                "SELECT epsilon, delta FROM privacy_budgets WHERE consumer = ?", (consumer,)
            ).fetchone()
            spent_eps, spent_delta = (0.0, 0.0) if found is None else found
            if not _fits(spent_eps + epsilon, max_epsilon, spent_delta + delta, max_delta):
                return False, float(spent_eps), float(spent_delta)
            spent_eps, spent_delta = spent_eps + epsilon, spent_delta + delta
            conn.execute(
                "INSERT INTO privacy_budgets (consumer, epsilon, delta) VALUES (?, ?, ?) "
                "ON CONFLICT (consumer) DO UPDATE SET epsilon = excluded.epsilon, "
                "delta = excluded.delta",
                (consumer, spent_eps, spent_delta),
            )
            return True, float(spent_eps), float(spent_delta)

        return await self._db.write(lambda conn: transaction(conn, body))

    async def spent(self, consumer: str) -> tuple[float, float]:
        found = await self._db.read(
            lambda c: c.execute(
                "SELECT epsilon, delta FROM privacy_budgets WHERE consumer = ?", (consumer,)
            ).fetchone()
        )
        return (0.0, 0.0) if found is None else (float(found[0]), float(found[1]))

    async def of_units(self, units: Sequence[str]) -> tuple[list[ReportRow], list[Covariate]]:
        wanted = sorted(set(units))

        def read(conn: sqlite3.Connection) -> tuple[list[ReportRow], list[Covariate]]:
            rows: list[ReportRow] = []
            covariates: list[Covariate] = []
            for chunk, marks in in_chunks(wanted, _CHUNK):
                sql = _SQL.of_units.format(marks=marks)
                rows += [row_of(tuple(r)) for r in conn.execute(sql, chunk)]
                sql = _SQL.covariates_of_units.format(marks=marks)
                covariates += [
                    Covariate(placement=p, experiment=e, unit=u, orders=int(o), revenue=float(r))
                    for p, e, u, o, r in conn.execute(sql, chunk)
                ]
            return rows, covariates

        return await self._db.read(read)

    async def erase(self, units: Sequence[str], people: Sequence[str]) -> dict[str, int]:
        gone_units, gone_people = sorted(set(units)), sorted(set(people))
        if not gone_units and not gone_people:
            return {"rows": 0, "covariates": 0, "people": 0}

        def body(conn: sqlite3.Connection) -> dict[str, int]:
            removed = {"rows": 0, "covariates": 0, "people": 0}
            for chunk, marks in in_chunks(gone_units, _CHUNK):
                for kind, table in (("rows", "report_rows"), ("covariates", "report_covariates")):
                    sql = f"DELETE FROM {table} WHERE unit IN ({marks})"  # noqa: S608
                    removed[kind] += conn.execute(sql, chunk).rowcount
            for chunk, marks in in_chunks(gone_people, _CHUNK):
                sql = f"DELETE FROM report_people WHERE key IN ({marks})"  # noqa: S608
                removed["people"] += conn.execute(sql, chunk).rowcount
            return removed

        removed = await self._db.write(lambda conn: transaction(conn, body))
        await self._db.truncate_wal()
        return removed

    async def aclose(self) -> None:
        await self._db.aclose()
