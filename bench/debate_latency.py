"""Debate latency of the embedded default (`maft up`), N=3 agents, M=2 rounds, on SmolLM2.

Two comparisons at concurrency 1 and 8, each society (`v0`: the base model for every agent;
`lora`: 2N PEFT-default adapters, B = 0, same text as the base but vLLM's LoRA path):

1. debate latency (POST /v1/debates, client-observed) / latency of one single completion of the
   same length (the question's generation prompt straight to vLLM, max_tokens=L, ignore_eos),
   target <= 1.15 x M;
2. gateway overhead: the same debate through the gateway vs in-process (maft.debate.run_debate +
   InferenceClient straight to vLLM, same roster and config), target <= 5 %.

Greedy decoding with max_tokens=L makes every response L tokens long (the early-stop share
reports responses that ended before L) and the two debate paths send identical requests (texts
are compared). Paths are interleaved per repetition (order rotating); medians are reported.
Warm-up excluded.

    python bench/debate_latency.py [--reps 5] [--max-tokens 64] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

from maft.debate import DebateConfig, Roster, run_debate
from maft.inference_client import InferenceClient, Sampling
from maft.tasks import Task, get_task

QUESTIONS = [
    "A farmer has 17 cows and buys 3 times as many sheep as cows. He then sells 12 sheep. "
    "How many animals does he have now?",
    "A train travels at 60 km per hour for 3 hours, then at 45 km per hour for 2 hours. "
    "How far does it travel in total?",
    "Sara has 48 stickers. She gives a quarter of them to her brother and 7 to her friend. "
    "How many stickers does she have left?",
    "Pens cost 3 dollars and notebooks 5 dollars. Tom buys 4 pens and 6 notebooks and pays "
    "with a 50 dollar bill. How much change does he get?",
    "A rectangle is 12 cm long and 7 cm wide. A square has the same perimeter. "
    "What is the area of the square?",
    "There are 5 boxes of 24 apples. 18 apples are rotten and the rest are packed into bags "
    "of 6. How many bags are there?",
    "A school has 420 students. 35 percent of them take the bus and a quarter of the rest "
    "walk. How many students walk?",
    "Mike reads 15 pages on Monday, twice as many on Tuesday, and 8 fewer than Tuesday on "
    "Wednesday. How many pages did he read in the three days?",
]
PATHS = ("single", "direct", "gateway")
TASK = "numeric"


@dataclass(frozen=True)
class Bench:
    """Clients and the fixed debate shape shared by every measurement."""

    gateway: httpx.AsyncClient
    inference: InferenceClient
    task: Task
    config: DebateConfig

    def _turn(self, rnd: int, agent: int, lora: str, text: str, tokens: int,
              finish: str | None, ms: float) -> dict[str, Any]:
        return {"round": rnd, "agent": agent, "lora_name": lora, "text": text,
                "completion_tokens": tokens, "finish_reason": finish, "latency_ms": ms}

    async def gateway_debate(self, roster: Roster, question: str) -> dict[str, Any]:
        """POST /v1/debates; client-observed seconds plus the server's own latency_ms."""
        s = self.config.sampling
        body = {"question": question, "task": TASK, "agents": self.config.agents,
                "rounds": self.config.rounds, "temperature": s.temperature, "top_p": s.top_p,
                "max_tokens": s.max_tokens}
        start = time.perf_counter()
        response = await self.gateway.post("/v1/debates", json=body)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        data = response.json()
        if data["society_version"] != roster.society_version:
            raise RuntimeError(f"gateway used society v{data['society_version']}, "
                               f"expected v{roster.society_version}")
        turns = [self._turn(r["round"], r["agent_index"], r["lora_name"], r["text"],
                            r["completion_tokens"], r["finish_reason"], r["latency_ms"])
                 for rnd in data["transcript"] for r in rnd["responses"]]
        return {"s": elapsed, "server_s": data["latency_ms"] / 1000, "turns": _sorted(turns)}

    async def direct_debate(self, roster: Roster, question: str) -> dict[str, Any]:
        """The same debate in-process: run_debate + InferenceClient straight to vLLM."""
        start = time.perf_counter()
        outcome = await run_debate(question, task=self.task, config=self.config, roster=roster,
                                   backend=self.inference)
        elapsed = time.perf_counter() - start
        turns = [self._turn(t.round, t.agent_index, t.lora_name, t.text, t.completion_tokens,
                            t.finish_reason, t.latency_ms) for t in outcome.turns]
        return {"s": elapsed, "turns": _sorted(turns)}

    async def single(self, roster: Roster, question: str) -> dict[str, Any]:
        """One completion of exactly L tokens: the generation prompt, ignore_eos, to vLLM."""
        s = self.config.sampling
        sampling = Sampling(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens,
                            extra={"ignore_eos": True})
        start = time.perf_counter()
        done = await self.inference.chat(model=roster.generators[0], sampling=sampling,
                                         messages=self.task.generation_messages(question))
        return {"s": time.perf_counter() - start, "completion_tokens": done.completion_tokens}


def _sorted(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(turns, key=lambda t: (t["round"], t["agent"]))


async def batch(call: Callable[[str], Awaitable[dict[str, Any]]],
                questions: list[str]) -> dict[str, Any]:
    """All `questions` in flight at once; per-request results and the batch's wall time."""
    start = time.perf_counter()
    runs = await asyncio.gather(*(call(q) for q in questions))
    return {"wall_s": time.perf_counter() - start, "questions": questions, "runs": list(runs)}


def calls(bench: Bench, roster: Roster) -> dict[str, Callable[[str], Awaitable[dict[str, Any]]]]:
    """The three measured paths for `roster`."""
    return {"single": lambda q: bench.single(roster, q),
            "direct": lambda q: bench.direct_debate(roster, q),
            "gateway": lambda q: bench.gateway_debate(roster, q)}


def cell_questions(rep: int, concurrency: int) -> list[str]:
    """The questions in flight in repetition `rep` of a cell (rotating through QUESTIONS)."""
    return [QUESTIONS[(rep * concurrency + i) % len(QUESTIONS)] for i in range(concurrency)]


async def warm_up(bench: Bench, roster: Roster, questions: list[str]) -> None:
    """Single and gateway paths once on every question the cells use (loads adapters, first
    batch shapes, prefix cache; direct sends the gateway's exact requests); not timed."""
    for name, call in calls(bench, roster).items():
        if name != "direct":
            result = await batch(call, questions)
            h.log(f"  warm-up {name}: {result['wall_s']:.1f} s for {len(questions)} in flight")


async def measure(bench: Bench, roster: Roster, concurrency: int,
                  reps: int) -> dict[str, list[dict[str, Any]]]:
    """`reps` repetitions of each path, `concurrency` requests in flight, order rotating."""
    paths = calls(bench, roster)
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in PATHS}
    for rep in range(reps):
        questions = cell_questions(rep, concurrency)
        order = PATHS[rep % 3:] + PATHS[:rep % 3]
        for name in order:
            raw[name].append(await batch(paths[name], questions))
        walls = ", ".join(f"{n} {raw[n][-1]['wall_s']:.1f} s" for n in PATHS)
        h.log(f"  c={concurrency} rep {rep + 1}/{reps}: {walls}")
    return raw


def summarize(society: str, concurrency: int, raw: dict[str, list[dict[str, Any]]],
              max_tokens: int, rounds: int) -> dict[str, Any]:
    """Medians, ratios against the targets, early stops and text mismatches of one cell."""
    def runs(path: str) -> list[dict[str, Any]]:
        return [r for b in raw[path] for r in b["runs"]]

    med = {p: statistics.median(r["s"] for r in runs(p)) for p in PATHS}
    turns = [t for p in ("direct", "gateway") for r in runs(p) for t in r["turns"]]
    pairs = list(zip(runs("direct"), runs("gateway"), strict=True))
    mismatched = sum([t["text"] for t in d["turns"]] != [t["text"] for t in g["turns"]]
                     for d, g in pairs)
    return {
        "society": society, "concurrency": concurrency, "debate_s": med["gateway"],
        "single_s": med["single"], "ratio": med["gateway"] / med["single"],
        "ratio_target": 1.15 * rounds, "direct_s": med["direct"], "gateway_s": med["gateway"],
        "gateway_server_s": statistics.median(r["server_s"] for r in runs("gateway")),
        "overhead": med["gateway"] / med["direct"] - 1, "overhead_target": 0.05,
        "early_stop_share": sum(t["finish_reason"] != "length" for t in turns) / len(turns),
        "single_not_L": sum(r["completion_tokens"] != max_tokens for r in runs("single")),
        "text_mismatches": mismatched, "debates_compared": len(pairs),
        "overhead_paired": h.paired_ratio(raw, "gateway", "direct") - 1,
        "ratio_paired": h.paired_ratio(raw, "gateway", "single"),
        "turn_latency_ms_median": {p: statistics.median(
            t["latency_ms"] for r in runs(p) for t in r["turns"]) for p in ("direct", "gateway")},
    }


def prepare(product: h.Product, society: str, agents: int, base: tuple[str, str]) -> Roster:
    """Activate society v0, or publish + activate the no-op LoRA society; return its roster."""
    name, root = base
    if society == "v0":
        if product.home is not None:
            h.activate(product.home, 0, "bench/debate_latency.py")
        return Roster.base(name, agents, 0)
    if product.home is None:
        raise SystemExit("the lora society needs --home (the instance's MAFT_HOME)")
    src = h.noop_lora(Path(root))
    return h.install_noop_society(product.home, src, base_name=name, model_root=root,
                                  agents=agents)


async def run_all(product: h.Product, args: argparse.Namespace,
                  report: dict[str, Any]) -> None:
    """Every society x concurrency cell into report["rows"] / ["raw"], saved after each cell."""
    base = product.base_model()
    report.update(base_model=base[0], model_root=base[1], rows=[], raw=[])
    config = DebateConfig(agents=args.agents, rounds=args.rounds, sampling=Sampling(
        temperature=0.0, top_p=1.0, max_tokens=args.max_tokens))
    restore = h.active_version(product.home) if product.home else None
    levels = [int(c) for c in args.concurrency.split(",")]
    used = {q for c in levels for rep in range(args.reps) for q in cell_questions(rep, c)}
    async with httpx.AsyncClient(base_url=product.gateway_url, timeout=1800) as gateway:
        inference = InferenceClient(product.inference_url, timeout=1800,
                                    api_key=product.inference_key)
        bench = Bench(gateway, inference, get_task(TASK), config)
        try:
            for society in args.societies.split(","):
                roster = await asyncio.to_thread(prepare, product, society, args.agents, base)
                h.log(f"society {society} (v{roster.society_version}): warm-up")
                await warm_up(bench, roster, [q for q in QUESTIONS if q in used])
                for concurrency in levels:
                    cpu = h.cpu_snapshot()
                    raw = await measure(bench, roster, concurrency, args.reps)
                    row = summarize(society, concurrency, raw, args.max_tokens, args.rounds)
                    row["others_cpu_share"] = h.others_cpu_share(cpu, h.cpu_snapshot())
                    report["rows"].append(row)
                    report["raw"].append({"society": society, "concurrency": concurrency,
                                          "roster": roster.__dict__, "paths": h.strip_texts(raw)})
                    save(args, report, complete=False)
        finally:
            await inference.aclose()
            if restore is not None and product.home is not None:
                h.activate(product.home, restore, "bench/debate_latency.py: restore")


def save(args: argparse.Namespace, report: dict[str, Any], *, complete: bool) -> None:
    """Write the JSON report (also after each cell, so a long run leaves partial results)."""
    report.update(complete=complete, args={k: str(v) for k, v in vars(args).items()},
                  environment=h.environment(), questions=QUESTIONS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per cell")
    p.add_argument("--max-tokens", type=int, default=64, help="L, tokens per response")
    p.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    p.add_argument("--societies", default="v0,lora", help="v0 and/or lora")
    p.add_argument("--agents", type=int, default=3, help="N")
    p.add_argument("--rounds", type=int, default=2, help="M")
    p.add_argument("--model-path", type=Path, help="base model folder (default: SmolLM2, cached)")
    p.add_argument("--gateway-url", help="use a running gateway (with --inference-url)")
    p.add_argument("--inference-url", help="the vLLM behind --gateway-url")
    p.add_argument("--home", type=Path, help="MAFT_HOME of the running instance (lora society)")
    p.add_argument("--out", type=Path, default=h.REPO_ROOT / "bench/results/debate_latency.json")
    return p.parse_args()


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so `finally` stops `maft up`


def main() -> None:
    """Start (or attach to) the product, measure, print the table, write the JSON."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    h.log(f"load average before start: {os.getloadavg()} on {os.cpu_count()} CPUs "
        "(other work on the machine skews every number)")
    if bool(args.gateway_url) != bool(args.inference_url):
        raise SystemExit("--gateway-url and --inference-url go together")
    if args.gateway_url:
        product = h.Product(args.gateway_url.rstrip("/"), args.inference_url.rstrip("/"),
                            args.home)
    else:
        h.log("starting maft up --no-auth (vLLM start takes about a minute)")
        product = h.Product.start(h.smollm2_dir(args.model_path))
        h.log(f"ready: gateway {product.gateway_url}, vLLM {product.inference_url}")
    started, report = time.perf_counter(), dict[str, Any]()
    try:
        asyncio.run(run_all(product, args, report))
    finally:
        product.stop()
    product.remove_home()
    print(h.table(report["rows"]))
    report["bench_seconds"] = time.perf_counter() - started
    save(args, report, complete=True)
    h.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
