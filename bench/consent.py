"""Consent gate benchmark: what the gate adds to one decision (target: under 50 µs p99).

In-process: the real ``ConsentService`` over the SQLite consent ledger in a fresh folder,
10,000 people with a recorded choice each, and the gate called the way decide calls it
(``gate(subjects, context, gpc)``) in four cases: a person with a cached state, a person
with no ledger entry (the common case), a request carrying ``categoryPreferences``, and a
request carrying a 600-character IAB TCF string. Each call is timed alone; p50/p99 printed.

Usage: python bench/consent.py [--people 10000] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, save

from segue.privacy.policy import RegionPolicy
from segue.privacy.service import ConsentService
from segue.privacy.signals import Signal
from segue.privacy.tcf import consent_string
from segue.settings import _default_regions
from segue.storage.sqlite_consent import SqliteConsentStore

VENDOR = 755


class Clock:
    def now(self) -> float:
        return time.time()


def tc_string() -> str:
    """A long string, as real CMPs send: ~370 vendors in a 1,100-bit field."""
    return consent_string(range(1, 10), set(range(1, 1100, 3)) | {VENDOR})


async def run(people: int, calls: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="segue-consent-"))
    store = SqliteConsentStore(folder)
    await store.open()
    policy = RegionPolicy({n: (r.regime, r.codes) for n, r in _default_regions().items()})
    service = ConsentService(store, policy, Clock(), vendor_id=VENDOR)
    await service.start()
    rng = random.Random(1)
    for p in range(people):
        await service.record(
            [f"user_id:{p}"],
            Signal(purposes={"personalization": rng.random() < 0.8}, region="DE"),
            source="api",
            actor="bench",
        )
    tcf = tc_string()
    cases = {
        "recorded person, cached": lambda i: ([f"user_id:{i % 1000}", f"anonymous_id:a{i}"], {}),
        "no ledger entry": lambda i: ([f"user_id:new{i}", f"anonymous_id:b{i}"], {}),
        "categoryPreferences in request": lambda i: (
            [f"user_id:{i % 1000}"],
            {"consent": {"categoryPreferences": {"personalization": True, "analytics": True}}},
        ),
        "TCF string in request": lambda i: ([f"user_id:{i % 1000}"], {"consent": {"tcf": tcf}}),
    }
    out: dict[str, Any] = {"people": people, "calls": calls, "tcf_chars": len(tcf)}
    for name, make in cases.items():
        for i in range(2000):  # warm: the cached case is what decide sees after the first call
            subjects, context = make(i)
            await service.gate(subjects, context, False)
        times = []
        for i in range(calls):
            subjects, context = make(i)
            t0 = time.perf_counter()
            await service.gate(subjects, context, False)
            times.append(time.perf_counter() - t0)
        times.sort()
        out[name] = {
            "p50_us": round(statistics.median(times) * 1e6, 2),
            "p99_us": round(times[int(len(times) * 0.99)] * 1e6, 2),
        }
    await store.aclose()
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.people, args.calls))
    for name, value in result.items():
        if isinstance(value, dict):
            print(
                f"consent gate, {name:32s} "
                f"p50 {value['p50_us']:7.2f} µs  p99 {value['p99_us']:7.2f} µs"
            )
    save("consent", {"machine": machine(), "result": result})


if __name__ == "__main__":
    main()
