"""Run every benchmark and print one summary (``make bench``).

The HTTP benchmarks start their own segue (pinned to core 0) on a fresh temporary folder and
drive it from core 1 over loopback; the in-process ones pin themselves to core 0. Raw
results land in ``bench/results/``. The ingest, processor and freshness figures are checked
against issue 2's targets here; the others (the worker, identity, matching, FEBRL, decide,
consent, privacy, features, the 10x spike) run as their own commands and their summary lines
are printed as they come. The Rank/Reward replay needs its own virtualenv with ``obp`` and
is not run here.
Usage: python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import freshness
import ingest_http
import processor
from _common import machine, save

TARGETS = {
    "ingest_events_per_s": 50_000,
    "fixed_rate_p99_ms": 20.0,
    "processor_events_per_s": 20_000,
    "visible_p99_ms": 100.0,
}


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 short run each (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        ingest_args = ["--runs", "1", "--duration", "3"]
        proc_args = ["--runs", "1", "--events", "20000", "--users", "2000"]
        fresh_args = ["--seconds", "5"]
    else:
        ingest_args, proc_args, fresh_args = [], [], []
    print("== ingest (HTTP)", flush=True)
    ingest = ingest_http.main(ingest_args)["summary"]
    print("\n== processor", flush=True)
    proc = processor.main(proc_args)["summary"]
    print("\n== freshness", flush=True)
    fresh = freshness.main(fresh_args)
    m = machine()
    rows: list[tuple[str, str, str, bool]] = [
        (
            "ingest, acknowledged events/s (median)",
            f"{ingest['events_per_s']:,.0f}",
            f">= {TARGETS['ingest_events_per_s']:,}",
            ingest["events_per_s"] >= TARGETS["ingest_events_per_s"],
        ),
        (
            "ingest p50 / p99 ack at max (ms)",
            f"{ingest['p50_ms']:.1f} / {ingest['p99_ms']:.1f}",
            "-",
            True,
        ),
        (
            "server CPU per acknowledged event (µs)",
            f"{ingest['server_cpu_us_per_event']:.1f}",
            "-",
            True,
        ),
        (
            "GET /healthz ceiling, req/s",
            f"{ingest['healthz_rps']:,.0f} (batch req/s = "
            f"{ingest['batch_rps_over_healthz_rps']:.1%})",
            "-",
            True,
        ),
        (
            f"p99 ack at {ingest['fixed_rate_events_per_s']:,.0f} events/s (ms)",
            f"{ingest['fixed_rate_p99_ms']:.1f} (p50 {ingest['fixed_rate_p50_ms']:.1f})",
            f"< {TARGETS['fixed_rate_p99_ms']:.0f}",
            ingest["fixed_rate_p99_ms"] < TARGETS["fixed_rate_p99_ms"],
        ),
        (
            "processor events/s",
            f"{proc['events_per_s']:,.0f}",
            f">= {TARGETS['processor_events_per_s']:,}",
            proc["events_per_s"] >= TARGETS["processor_events_per_s"],
        ),
        (
            "bytes per stored event / per profile",
            f"{proc['bytes_per_event']:,.0f} / {proc['bytes_per_profile']:,.0f}",
            "-",
            True,
        ),
        (
            f"event→visible p99 at {fresh['background']['events_per_s']:,.0f} events/s (ms)",
            f"{fresh['visible_p99_ms']:.1f} (p50 {fresh['visible_p50_ms']:.1f})",
            f"< {TARGETS['visible_p99_ms']:.0f}",
            fresh["visible_p99_ms"] < TARGETS["visible_p99_ms"],
        ),
    ]
    print(
        f"\n== summary: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, SQLite {m['sqlite']}"
    )
    foreign = max(ingest["foreign_share"], proc["foreign_share"], fresh["cpu"]["foreign_share"])
    if foreign > 0.05:
        print(
            f"  NOTE: other processes used up to {foreign:.0%} of the machine during these runs; "
            "the figures understate segue"
        )
    for name, value, target, ok in rows:
        status = "" if target == "-" else f"  target {target}: {verdict(ok)}"
        print(f"  {name:44s} {value}{status}")
    summary: dict[str, Any] = {
        "machine": m,
        "ingest": ingest,
        "processor": proc,
        "freshness": {k: v for k, v in fresh.items() if k != "machine"},
    }
    print(f"results in {save('summary', summary)}")
    others = _QUICK if args.quick else _FULL
    for script, script_args in others:
        print(f"\n== {script} {' '.join(script_args)}", flush=True)
        done = subprocess.run(
            [sys.executable, str(HERE / script), *script_args],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
        for line in lines[-8:]:
            print(f"  {line}")
        if done.returncode != 0:
            print(f"  FAILED ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return 0


HERE = Path(__file__).resolve().parent
#: (script, arguments) run after the summary; quick runs are smoke tests of the commands
_FULL: list[tuple[str, list[str]]] = [
    ("ingest_steps.py", []),
    ("log_append.py", []),
    ("log_append.py", ["--ids", "sequential"]),
    ("worker.py", []),
    ("identity.py", ["--profiles", "100000"]),
    ("matching.py", []),
    ("febrl_api.py", ["--seeds", "3"]),
    ("decide.py", []),
    ("model_save.py", []),
    ("decide_http.py", []),
    ("consent.py", []),
    ("privacy.py", []),
    ("features.py", []),
    ("item_sessions.py", []),
    ("spike.py", []),
    ("idle.py", []),
]
_QUICK: list[tuple[str, list[str]]] = [
    ("ingest_steps.py", ["--messages", "2000", "--repeat", "2"]),
    ("log_append.py", ["--records", "20000"]),
    ("worker.py", ["--events", "10000", "--runs", "1"]),
    ("identity.py", ["--profiles", "5000", "--arrivals", "1000"]),
    ("decide.py", ["--items", "20000", "--requests", "2000"]),
    ("model_save.py", ["--items", "20000", "--runs", "1"]),
    ("consent.py", ["--people", "1000", "--calls", "2000"]),
    ("features.py", ["--events", "20000", "--runs", "1"]),
    ("item_sessions.py", ["--phases", "1", "--views", "5000"]),
    ("spike.py", ["--quick"]),
    ("idle.py", ["--seconds", "3", "--settle", "2"]),
]


if __name__ == "__main__":
    sys.exit(main())
