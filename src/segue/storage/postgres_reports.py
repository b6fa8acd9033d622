"""KPI report numbers on PostgreSQL (tables ``report_*`` and ``privacy_budgets``).

The same rows as on SQLite. A batch commits with its checkpoint in one transaction that
first locks the checkpoint row and checks it still is where the batch was read
(``StaleState`` otherwise), so two reports consumers on one database never count a batch
twice. A privacy budget is charged under a row lock, with ``synchronous_commit=on``: two
releases never both pass on one remaining share, and a charge is never lost. Per-unit rows
are personal data: an erasure deletes them and vacuums the tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from segue.core.model import Covariate, ReportBatch, ReportCell, ReportRow
from segue.errors import StaleState
from segue.storage._postgres import PgDatabase
from segue.storage._report_sql import ReportSql, cell_of, row_of, where
from segue.storage._report_sql import fits as _fits

__all__ = ["PostgresReportStore"]

MIGRATIONS = [
    """
    CREATE TABLE report_rows (
        placement       TEXT COLLATE "C" NOT NULL,
        experiment      TEXT COLLATE "C" NOT NULL,
        variant         TEXT COLLATE "C" NOT NULL,
        unit            TEXT COLLATE "C" NOT NULL,
        day             TEXT COLLATE "C" NOT NULL,
        impressions     BIGINT NOT NULL DEFAULT 0,
        clicks          BIGINT NOT NULL DEFAULT 0,
        add_to_carts    BIGINT NOT NULL DEFAULT 0,
        conversions     BIGINT NOT NULL DEFAULT 0,
        revenue         DOUBLE PRECISION NOT NULL DEFAULT 0,
        sessions        BIGINT NOT NULL DEFAULT 0,
        bounces         BIGINT NOT NULL DEFAULT 0,
        timed_pages     BIGINT NOT NULL DEFAULT 0,
        time_on_page_s  DOUBLE PRECISION NOT NULL DEFAULT 0,
        time_on_page_sq DOUBLE PRECISION NOT NULL DEFAULT 0,
        PRIMARY KEY (placement, experiment, variant, day, unit)
    );
    CREATE INDEX report_rows_unit ON report_rows (unit);
    CREATE TABLE report_covariates (
        placement  TEXT COLLATE "C" NOT NULL,
        experiment TEXT COLLATE "C" NOT NULL,
        unit       TEXT COLLATE "C" NOT NULL,
        orders     BIGINT NOT NULL,
        revenue    DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (placement, experiment, unit)
    );
    CREATE INDEX report_covariates_unit ON report_covariates (unit);
    CREATE TABLE report_people (key TEXT COLLATE "C" PRIMARY KEY, state BYTEA NOT NULL);
    CREATE TABLE report_checkpoints (
        consumer TEXT COLLATE "C" PRIMARY KEY, position BIGINT NOT NULL
    );
    CREATE TABLE privacy_budgets (
        consumer TEXT COLLATE "C" PRIMARY KEY,
        epsilon  DOUBLE PRECISION NOT NULL,
        delta    DOUBLE PRECISION NOT NULL
    );
    """,
]
_SQL = ReportSql("%s", "BIGINT", "DOUBLE PRECISION")


class PostgresReportStore:
    """Report rows, covariates, attribution state, checkpoints and privacy budgets."""

    def __init__(self, url: str, *, max_connections: int = 2) -> None:
        self._db = PgDatabase(url, "reports", MIGRATIONS, max_size=max_connections)

    async def open(self) -> None:
        await self._db.open()

    async def checkpoint(self, consumer: str) -> int:
        row = await self._db.fetchone(
            "SELECT position FROM report_checkpoints WHERE consumer = %s", (consumer,)
        )
        return 0 if row is None else int(row[0])

    async def people(self, keys: Iterable[str]) -> dict[str, bytes]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        rows = await self._db.fetchall(
            "SELECT key, state FROM report_people WHERE key = ANY(%s)", (wanted,)
        )
        return {key: bytes(state) for key, state in rows}

    async def commit(self, batch: ReportBatch, consumer: str, after: int, offset: int) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO report_checkpoints (consumer, position) VALUES (%s, 0) "
                "ON CONFLICT (consumer) DO NOTHING",
                (consumer,),
            )
            cur = await conn.execute(
                "SELECT position FROM report_checkpoints WHERE consumer = %s FOR UPDATE",
                (consumer,),
            )
            found = await cur.fetchone()
            if found is None or int(found[0]) != after:
                raise StaleState(f"reports checkpoint of {consumer!r} moved past {after}")
            async with conn.cursor() as many:
                if batch.rows:
                    await many.executemany(
                        _SQL.add_row, [_SQL.add_row_params(r) for r in batch.rows]
                    )
                if batch.covariates:
                    await many.executemany(
                        _SQL.add_covariate,
                        [_SQL.add_covariate_params(c) for c in batch.covariates],
                    )
                if batch.people:
                    await many.executemany(
                        "INSERT INTO report_people (key, state) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO UPDATE SET state = excluded.state",
                        list(batch.people.items()),
                    )
            if batch.drop_people:
                await conn.execute(
                    "DELETE FROM report_people WHERE key = ANY(%s)", (list(batch.drop_people),)
                )
            await conn.execute(
                "UPDATE report_checkpoints SET position = %s WHERE consumer = %s",
                (offset, consumer),
            )

    async def cells(
        self, placement: str | None, experiment: str | None, first_day: str, last_day: str
    ) -> list[ReportCell]:
        filters, params = where("%s", placement, experiment)
        sql = _SQL.cells.format(mark="%s", filters=filters)
        rows = await self._db.fetchall(sql, (first_day, last_day, *params))
        return [cell_of(tuple(r)) for r in rows]

    async def units(
        self,
        placement: str | None,
        experiment: str | None,
        first_day: str,
        last_day: str,
        *,
        by_day: bool,
    ) -> list[ReportRow]:
        filters, params = where("%s", placement, experiment)
        template = _SQL.units_by_day if by_day else _SQL.units_total
        sql = template.format(mark="%s", filters=filters)
        rows = await self._db.fetchall(sql, (first_day, last_day, *params))
        return [row_of(tuple(r)) for r in rows]

    async def covariates(self, placement: str | None, experiment: str | None) -> list[Covariate]:
        filters, params = where("%s", placement, experiment)
        rows = await self._db.fetchall(_SQL.covariates.format(filters=filters), params)
        return [
            Covariate(placement=p, experiment=e, unit=u, orders=int(o), revenue=float(r))
            for p, e, u, o, r in rows
        ]

    async def spend(
        self, consumer: str, epsilon: float, delta: float, max_epsilon: float, max_delta: float
    ) -> tuple[bool, float, float]:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO privacy_budgets (consumer, epsilon, delta) VALUES (%s, 0, 0) "
                "ON CONFLICT (consumer) DO NOTHING",
                (consumer,),
            )
            cur = await conn.execute(
                "SELECT epsilon, delta FROM privacy_budgets WHERE consumer = %s FOR UPDATE",
                (consumer,),
            )
            found = await cur.fetchone()
            spent_eps, spent_delta = (0.0, 0.0) if found is None else map(float, found)
            if not _fits(spent_eps + epsilon, max_epsilon, spent_delta + delta, max_delta):
                return False, spent_eps, spent_delta
            spent_eps, spent_delta = spent_eps + epsilon, spent_delta + delta
            await conn.execute(
                "UPDATE privacy_budgets SET epsilon = %s, delta = %s WHERE consumer = %s",
                (spent_eps, spent_delta, consumer),
            )
        return True, spent_eps, spent_delta

    async def spent(self, consumer: str) -> tuple[float, float]:
        row = await self._db.fetchone(
            "SELECT epsilon, delta FROM privacy_budgets WHERE consumer = %s", (consumer,)
        )
        return (0.0, 0.0) if row is None else (float(row[0]), float(row[1]))

    async def of_units(self, units: Sequence[str]) -> tuple[list[ReportRow], list[Covariate]]:
        wanted = sorted(set(units))
        found = await self._db.fetchall(
            _SQL.of_units.format(marks="SELECT unnest(%s::text[])"), (wanted,)
        )
        covs = await self._db.fetchall(
            _SQL.covariates_of_units.format(marks="SELECT unnest(%s::text[])"), (wanted,)
        )
        return [row_of(tuple(r)) for r in found], [
            Covariate(placement=p, experiment=e, unit=u, orders=int(o), revenue=float(r))
            for p, e, u, o, r in covs
        ]

    async def erase(self, units: Sequence[str], people: Sequence[str]) -> dict[str, int]:
        gone_units, gone_people = sorted(set(units)), sorted(set(people))
        removed = {"rows": 0, "covariates": 0, "people": 0}
        if not gone_units and not gone_people:
            return removed
        async with self._db.transaction() as conn:
            for kind, table in (("rows", "report_rows"), ("covariates", "report_covariates")):
                cur = await conn.execute(
                    f"DELETE FROM {table} WHERE unit = ANY(%s)",  # noqa: S608 - fixed names
                    (gone_units,),
                )
                removed[kind] = cur.rowcount
            cur = await conn.execute(
                "DELETE FROM report_people WHERE key = ANY(%s)", (gone_people,)
            )
            removed["people"] = cur.rowcount
        await self._db.vacuum("report_rows", "report_covariates", "report_people")
        return removed

    async def aclose(self) -> None:
        await self._db.aclose()
