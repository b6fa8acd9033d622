"""Offline evaluation of Rank/Reward by replay (Li et al. 2011) through the public HTTP API.

Logged data: obp's ``SyntheticBanditDataset`` (logistic reward, binary, 10 actions, 5 context
dimensions) with a uniform logging policy (``beta=0``), 50,000 rounds per seed. Every round
is ranked by a running ``segue serve`` (``POST /v1/rank`` with ``defer_activation``); only
when segue's ``reward_action_id`` equals the logged action is the event activated and given
the logged reward, so segue learns from exactly the rounds a replay may use. Each choice is
scored with the dataset's TRUE expected reward (``expected_reward``), over all rounds.

Baselines, scored the same way: the uniform logging policy, ε-greedy over actions (no
context, ε as segue's, replayed on the same logged data), the best single action in hindsight
(an oracle that never explores; ``_explored`` is the same oracle shown with segue's ε floor,
(1 − ε)·best + ε·uniform) and the optimal policy. segue's figure is given twice: ``chosen``
(the action it asked the caller to show, exploration included: compare with the explored
baselines) and ``greedy`` (the action it gave the highest probability: what the learned
policy shows without its ε floor; compare with the oracles).

Usage: python bench/rank_replay.py [--seeds 5] [--rounds 50000] [--algorithm linucb]
       [--algorithm thompson] [--alpha 0.5] [--segue .venv/bin/segue] [--resummarize]
Needs (in its own virtualenv, it pulls torch): pip install torch==2.13.0 && pip install obp
(obp 0.5.7 declares Python < 3.11; it installs with --no-deps --ignore-requires-python plus
matplotlib, pandas, scikit-learn, scipy, seaborn, tqdm, pyyaml, mypy-extensions) and orjson.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ADMIN_KEY, RESULTS, Connection, free_port, http_get, machine, save

N_ACTIONS = 10
DIM_CONTEXT = 5
EPSILON = 0.2


def dataset(seed: int, rounds: int) -> dict[str, Any]:
    from obp.dataset import SyntheticBanditDataset, logistic_reward_function

    data = SyntheticBanditDataset(
        n_actions=N_ACTIONS,
        dim_context=DIM_CONTEXT,
        reward_type="binary",
        reward_function=logistic_reward_function,
        beta=0.0,  # uniform logging policy
        random_state=seed,
    )
    feedback = data.obtain_batch_bandit_feedback(n_rounds=rounds)
    assert np.allclose(feedback["pscore"], 1.0 / N_ACTIONS), "logging policy is not uniform"
    return dict(feedback)


def epsilon_greedy(feedback: dict[str, Any], seed: int) -> float:
    """Non-contextual ε-greedy over action means, replayed on the same logged rounds."""
    rng = np.random.default_rng(seed)
    sums, counts = np.zeros(N_ACTIONS), np.zeros(N_ACTIONS)
    total = 0.0
    for t, logged in enumerate(feedback["action"]):
        if rng.random() < EPSILON:
            choice = int(rng.integers(N_ACTIONS))
        else:
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
            best = np.flatnonzero(means == means.max())
            choice = int(rng.choice(best))
        total += feedback["expected_reward"][t, choice]
        if choice == logged:
            sums[choice] += feedback["reward"][t]
            counts[choice] += 1
    return float(total / len(feedback["action"]))


class Segue:
    """``segue serve`` on a fresh data folder with a rank configuration."""

    def __init__(self, executable: str, algorithm: str, alpha: float) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="segue-rank-"))
        self.port = free_port()
        config = self.tmp / "segue.yaml"
        config.write_text(
            f"rank:\n  algorithm: {algorithm}\n  alpha: {alpha}\n  exploration: {EPSILON}\n"
        )
        cmd = [executable, "serve", "--port", str(self.port), "--data", str(self.tmp / "data")]
        cmd += ["--config", str(config)]
        env = dict(os.environ, SEGUE_ADMIN_KEY=ADMIN_KEY)
        log = (self.tmp / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.tmp / "server.log").read_text())
            try:
                if http_get(self.port, "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("segue did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def replay(port: int, feedback: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    conn = await Connection(port).connect()
    actions = [{"id": f"a{a}"} for a in range(N_ACTIONS)]
    expected = feedback["expected_reward"]
    chosen = np.zeros(len(feedback["action"]))
    greedy = np.zeros(len(feedback["action"]))
    matched = 0
    started = time.perf_counter()
    try:
        for t, logged in enumerate(feedback["action"]):
            body = {
                "context_features": [{"x": [float(v) for v in feedback["context"][t]]}],
                "actions": actions,
                "defer_activation": True,
            }
            status, raw = await conn.request("POST", "/v1/rank", orjson.dumps(body), headers)
            if status != 200:
                raise RuntimeError(f"rank answered {status}: {raw[:300]!r}")
            answer = orjson.loads(raw)
            choice = int(answer["reward_action_id"][1:])
            top = max(answer["ranking"], key=lambda r: r["probability"])
            chosen[t] = expected[t, choice]
            greedy[t] = expected[t, int(top["id"][1:])]
            if choice != logged:
                continue
            matched += 1
            event = answer["event_id"]
            status, raw = await conn.request("POST", f"/v1/rank/{event}/activate", b"", headers)
            reward = orjson.dumps({"value": float(feedback["reward"][t])})
            status2, raw2 = await conn.request("POST", f"/v1/rank/{event}/reward", reward, headers)
            if status != 200 or status2 != 200:
                raise RuntimeError(f"activate/reward answered {status}/{status2}: {raw2[:300]!r}")
    finally:
        await conn.close()
    elapsed = time.perf_counter() - started
    tail = len(chosen) // 5
    return {
        "chosen": float(chosen.mean()),
        "greedy": float(greedy.mean()),
        "chosen_last_20pct": float(chosen[-tail:].mean()),
        "greedy_last_20pct": float(greedy[-tail:].mean()),
        "matched_rounds": matched,
        "seconds": round(elapsed, 1),
    }


BASELINES = ("uniform", "epsilon_greedy", "best_single_action", "best_single_action_explored")


def explored(row: dict[str, Any]) -> float:
    """The best single action shown with segue's ε floor: (1 − ε)·best + ε·uniform."""
    return (1 - EPSILON) * row["best_single_action"] + EPSILON * row["uniform"]


def summarize(per_seed: list[dict[str, Any]], algorithms: list[str]) -> dict[str, float]:
    for row in per_seed:
        row["best_single_action_explored"] = explored(row)

    def mean(key: str, sub: str | None = None) -> float:
        values = [r[key][sub] if sub else r[key] for r in per_seed]
        return round(statistics.fmean(values), 4)

    summary = {key: mean(key) for key in (*BASELINES, "optimal")}
    for algorithm in algorithms:
        for sub in ("chosen", "greedy", "chosen_last_20pct", "greedy_last_20pct"):
            summary[f"segue_{algorithm}_{sub}"] = mean(f"segue_{algorithm}", sub)
    return summary


def report(result: dict[str, Any], name: str) -> None:
    path = save(name, result)
    print(f"\n{'policy':<36}{'mean true expected reward':>26}")
    for key, value in result["summary"].items():
        print(f"{key:<36}{value:>26.4f}")
    print(f"\nwritten to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=50_000)
    parser.add_argument("--algorithm", action="append", choices=["linucb", "thompson"])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument(
        "--segue", default=str(Path(__file__).resolve().parents[1] / ".venv/bin/segue")
    )
    parser.add_argument("--name", default="rank_replay")
    parser.add_argument(
        "--resummarize", action="store_true", help="recompute the summary of a saved result"
    )
    args = parser.parse_args()
    if args.resummarize:
        result = orjson.loads((RESULTS / f"{args.name}.json").read_bytes())
        result["summary"] = summarize(result["per_seed"], result["config"]["algorithms"])
        report(result, args.name)
        return
    algorithms = args.algorithm or ["linucb"]
    per_seed: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        feedback = dataset(seed, args.rounds)
        er = feedback["expected_reward"]
        row: dict[str, Any] = {
            "seed": seed,
            "uniform": float(er.mean()),
            "epsilon_greedy": epsilon_greedy(feedback, seed),
            "best_single_action": float(er.mean(axis=0).max()),
            "optimal": float(er.max(axis=1).mean()),
        }
        for algorithm in algorithms:
            server = Segue(args.segue, algorithm, args.alpha)
            try:
                row[f"segue_{algorithm}"] = asyncio.run(replay(server.port, feedback))
            finally:
                server.stop()
        per_seed.append(row)
        print(orjson.dumps(row).decode(), flush=True)
    result = {
        "benchmark": "rank_replay",
        "method": "replay (Li et al. 2011) of obp SyntheticBanditDataset, logistic binary "
        "reward, uniform logging; mean TRUE expected reward of each policy's choices",
        "config": {
            "rounds": args.rounds,
            "seeds": args.seeds,
            "n_actions": N_ACTIONS,
            "dim_context": DIM_CONTEXT,
            "exploration": EPSILON,
            "alpha": args.alpha,
            "algorithms": algorithms,
        },
        "machine": machine(),
        "summary": summarize(per_seed, algorithms),
        "per_seed": per_seed,
    }
    report(result, args.name)


if __name__ == "__main__":
    main()
