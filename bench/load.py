"""Load and faults: N concurrent clients asking debates for a bounded time, on SQLite and on
PostgreSQL, against the product started here (vLLM + gateway as `maft up` runs them, SmolLM2).

For each N: admitted (201) vs shed (503 at admission, 429) vs failed requests, p50/p99 of the
admitted debates' client-observed latency, the gateway's mean queue wait, every acknowledged
debate re-read (it must be stored completed with every turn), and how long vLLM kept requests
running after the clients stopped. Clients honour Retry-After (at most 5 s) as a polite client
does. `--fault` also kills inference by its PID a third of the way in, starts it again at once
(what a supervisor does), and reports what the clients got and how long until debates succeeded.

    python bench/load.py --db sqlite,postgres --clients 8,20,50 --duration 120 --fault
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

# This checkout's maft, services and helpers (not an installed copy): the services it starts
# run from maft.processes.REPO_ROOT, so that must be this checkout too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h
from _stack import Stack

QUESTION = "Tom has {a} apples and buys {b} more. How many apples does he have?"


class Clients:
    """What every request of one cell got."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.acknowledged: list[str] = []
        self.timeline: list[tuple[float, str]] = []

    def record(self, start: float, response: httpx.Response | None, error: str = "") -> float:
        """Count one answer; the seconds to wait before the next request."""
        elapsed = time.monotonic() - start
        kind = error or str(response.status_code if response is not None else "none")
        if response is not None and response.status_code >= 400:
            kind += ":" + str(response.json().get("error", {}).get("type", "?"))
        self.outcomes[kind] += 1
        self.timeline.append((time.monotonic(), kind))
        if response is not None and response.status_code == 201:
            self.latencies.append(elapsed)
            self.acknowledged.append(response.json()["id"])
            return 0.0
        retry = response.headers.get("retry-after") if response is not None else None
        return min(float(retry), 5.0) if retry else 1.0


async def client(http: httpx.AsyncClient, body: dict[str, Any], until: list[float],
                 seen: Clients, index: int) -> None:
    """Ask debates one after another until `until[0]` (a fault may move it)."""
    n = 0
    while time.monotonic() < until[0]:
        n += 1
        start = time.monotonic()
        question = QUESTION.format(a=index + 1, b=n)
        try:
            response = await http.post("/v1/debates", json={**body, "question": question})
            wait = seen.record(start, response)
        except httpx.HTTPError as exc:
            wait = seen.record(start, None, type(exc).__name__)
        await asyncio.sleep(min(wait, max(0.0, until[0] - time.monotonic())))


async def reread(http: httpx.AsyncClient, ids: list[str], turns: int) -> dict[str, int]:
    """Every acknowledged debate, read back: completed with all its turns?"""
    bad = 0
    for debate_id in ids:
        response = await http.get(f"/v1/debates/{debate_id}")
        data = response.json() if response.status_code == 200 else {}
        stored = sum(len(r["responses"]) for r in data.get("transcript", []))
        bad += data.get("status") != "completed" or stored != turns
    return {"acknowledged": len(ids), "reread_incomplete": bad}


async def queue_wait(http: httpx.AsyncClient) -> tuple[float, float]:
    """(sum, count) of the gateway's maft_debate_queue_seconds."""
    values = {}
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(("maft_debate_queue_seconds_sum", "maft_debate_queue_seconds_count")):
            values[line.split()[0]] = float(line.split()[1])
    return (values.get("maft_debate_queue_seconds_sum", 0.0),
            values.get("maft_debate_queue_seconds_count", 0.0))


async def drain(stack: Stack, limit: float = 300) -> float:
    """Seconds until vLLM runs no request after the clients stopped."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await asyncio.to_thread(stack.running_requests) == 0:
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    return limit


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def cell(stack: Stack, n: int, args: argparse.Namespace, fault: bool = False
               ) -> dict[str, Any]:
    """N clients for `duration` seconds (with a fault a third of the way in)."""
    body = {"agents": args.agents, "rounds": args.rounds, "max_tokens": args.max_tokens,
            "temperature": 0.7}
    seen, before_cpu = Clients(), h.cpu_snapshot()
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=args.client_timeout) as http:
        q0 = await queue_wait(http)
        start = time.monotonic()
        # With a fault the clients go on until debates succeed again (at most 15 min).
        until = [start + (args.duration if not fault else 900 + args.duration)]
        tasks = [asyncio.create_task(client(http, body, until, seen, i)) for i in range(n)]
        faults = await inject_fault(stack, start, args.duration, seen, until) if fault else {}
        await asyncio.wait(tasks, timeout=until[0] - time.monotonic() + args.client_timeout)
        for task in tasks:
            task.cancel()  # requests still waiting at the end are abandoned
        stopped = time.monotonic()
        drained = await drain(stack)
        q1 = await queue_wait(http)
        checked = await reread(http, seen.acknowledged, args.agents * args.rounds)
    admitted = seen.outcomes["201"]
    return {"db": args.current_db, "clients": n, "duration_s": round(stopped - start, 1),
            "admitted": admitted, "shed": sum(v for k, v in seen.outcomes.items()
                                              if k.startswith(("503:overloaded", "429"))),
            "outcomes": dict(seen.outcomes), "p50_s": percentile(seen.latencies, 0.5),
            "p99_s": percentile(seen.latencies, 0.99),
            "debates_per_min": 60 * admitted / max(stopped - start, 1e-9),
            "mean_queue_wait_s": (q1[0] - q0[0]) / max(q1[1] - q0[1], 1),
            "vllm_drain_s": round(drained, 1), **checked, **faults,
            "others_cpu_share": h.others_cpu_share(before_cpu, h.cpu_snapshot()),
            "loadavg": os.getloadavg()}


async def inject_fault(stack: Stack, start: float, duration: float, seen: Clients,
                       until: list[float]) -> dict[str, Any]:
    """Kill inference by PID at duration/3, restart it, time the recovery; then let the
    clients run on for a third of the duration."""
    await asyncio.sleep(duration / 3)
    killed_at = time.monotonic()
    pid = await asyncio.to_thread(stack.kill_inference)
    h.log(f"  killed inference (pid {pid}) at +{killed_at - start:.0f} s; restarting")
    stack.restart_inference()
    ready = await asyncio.to_thread(stack.wait_ready, 900)
    ok = [t for t, k in seen.timeline if t > killed_at and k == "201"]
    while not ok and time.monotonic() < until[0]:
        await asyncio.sleep(0.5)
        ok = [t for t, k in seen.timeline if t > killed_at and k == "201"]
    end = min(ok) if ok else time.monotonic()
    until[0] = min(until[0], time.monotonic() + duration / 3)
    during = Counter(k for t, k in seen.timeline if killed_at <= t <= end)
    return {"fault": {"killed_pid": pid, "killed_at_s": round(killed_at - start, 1),
                      "inference_ready_after_s": round(ready, 1),
                      "first_debate_ok_after_s": round(end - killed_at, 1) if ok else None,
                      "answers_until_recovered": dict(during)}}


def table(rows: list[dict[str, Any]]) -> str:
    """The printed summary."""
    head = (f"{'db':<9}{'N':>4}{'admitted':>9}{'shed':>6}{'failed':>7}{'p50 s':>8}{'p99 s':>8}"
            f"{'deb/min':>8}{'queue s':>8}{'reread bad':>11}{'drain s':>8}  fault")
    lines = [head, "-" * len(head)]
    for r in rows:
        failed = sum(r["outcomes"].values()) - r["admitted"] - r["shed"]
        fault = r.get("fault", {})
        note = (f"recovered in {fault['first_debate_ok_after_s']} s (vLLM ready "
                f"{fault['inference_ready_after_s']} s): {fault['answers_until_recovered']}"
                if fault else "")
        lines.append(f"{r['db']:<9}{r['clients']:>4}{r['admitted']:>9}{r['shed']:>6}"
                     f"{failed:>7}{fmt(r['p50_s']):>8}{fmt(r['p99_s']):>8}"
                     f"{r['debates_per_min']:>8.1f}{r['mean_queue_wait_s']:>8.1f}"
                     f"{r['reread_incomplete']:>6}/{r['acknowledged']:<4}"
                     f"{r['vllm_drain_s']:>8.1f}  {note}")
    return "\n".join(lines)


def fmt(value: float | None) -> str:
    """Seconds or a dash."""
    return "-" if value is None else f"{value:.1f}"


def gateway_env(args: argparse.Namespace) -> dict[str, str]:
    """Admission settings under test (the gateway's defaults unless given)."""
    env = {"MAFT_DEBATE_TIMEOUT_S": str(args.debate_timeout)}
    if args.slots:
        env["MAFT_MAX_DEBATES_IN_FLIGHT"] = str(args.slots)
    if args.queue is not None:
        env["MAFT_MAX_DEBATES_QUEUED"] = str(args.queue)
    return env


async def run_db(db: str, model: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every client count on one database (one product), then the fault cell."""
    h.log(f"starting vLLM + gateway on {db}")
    stack = Stack.start(model, db, args.pg_url, gateway_env(args))
    args.current_db, rows = db, []
    try:
        for n in args.clients:
            h.log(f"  {db}: {n} clients for {args.duration:.0f} s")
            rows.append(await cell(stack, n, args))
        if args.fault:
            h.log(f"  {db}: fault, {args.fault_clients} clients")
            rows.append(await cell(stack, args.fault_clients, args, fault=True))
    finally:
        stack.stop()
    return rows


def parse_args() -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default="sqlite,postgres")
    p.add_argument("--clients", default="8,20,50")
    p.add_argument("--duration", type=float, default=120.0, help="Seconds per cell.")
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--client-timeout", type=float, default=300.0)
    p.add_argument("--debate-timeout", type=float, default=300.0)
    p.add_argument("--slots", type=int, default=0, help="MAFT_MAX_DEBATES_IN_FLIGHT (0: default)")
    p.add_argument("--queue", type=int, default=None, help="MAFT_MAX_DEBATES_QUEUED")
    p.add_argument("--fault", action="store_true", help="Also kill inference mid-run.")
    p.add_argument("--fault-clients", type=int, default=8)
    p.add_argument("--model-path", type=Path, default=None)
    p.add_argument("--pg-url", default=os.environ.get(
        "MAFT_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    p.add_argument("--out", type=Path, default=h.REPO_ROOT / "bench/results/load.json")
    args = p.parse_args()
    args.clients = [int(x) for x in args.clients.split(",") if x]
    args.dbs = [x for x in args.db.split(",") if x]
    return args


def main() -> None:
    """Run every cell, print the table, write the JSON."""
    args = parse_args()
    model = h.smollm2_dir(args.model_path)
    rows: list[dict[str, Any]] = []
    for db in args.dbs:
        rows += asyncio.run(run_db(db, model, args))
    print(table(rows))
    report = {"command": " ".join(sys.argv), "config": {k: str(v) for k, v in vars(args).items()},
              "environment": h.environment(), "cells": rows,
              "admission_defaults": "see services/gateway/settings.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    h.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
