"""Multi-LoRA serving on CPU: base model vs one adapter vs six adapters, vLLM's stock CPU LoRA op
vs maft's dense kernel (vLLM plugin `maft_cpu_lora`), at concurrency 1 and 8.

The workload is the product's: 3x2 debates (agents N=3, rounds M=2) on the CPU experiment's task
(arithmetic, 2 terms, '+', operands 0-29) with its response length L=64 tokens and sampling
(T=0.7, top_p=0.9). With ignore_eos every response is exactly L tokens, so every cell does the
same work. Sampling matters: under greedy decoding the three agents of a debate write the same
answer, round 2's three critic prompts are then identical, and vLLM's prefix cache (keyed by
adapter) shares them for the base model and a one-adapter society but not across six adapters.

For each kernel, one vLLM server started by the product's launcher (`python -m services.inference
serve`, product defaults, MAFT_CPU_LORA_KERNEL=stock|dense; one server at a time, same build;
"dense+compile" adds MAFT_CPU_LORA_COMPILE=1, torch.compile kept on), and three societies on it:
  base  every agent the base model (on the LoRA-enabled server);
  one   all six roles one adapter (single-agent finetuning);
  six   six different adapters (MAFT: 3 generators, 3 critics).
Adapters are PEFT-default rank-8 q/k/v/o LoRAs (B = 0: the base model's output distribution,
while the LoRA math runs in full).

Per cell (kernel x society x concurrency c): c debates in flight at once, `--reps` repetitions,
societies interleaved within a repetition (order rotating). Completion tok/s = completion tokens
/ wall time of the batches; debate latency = median over the cell's debates; tok/CPU-s =
completion tokens per CPU second of the server's processes (and this client), a figure less
sensitive to other work on the machine than wall time. Ratios are to the base society on the
same server; "vs stock" compares the servers. Warm-up excluded.

    python bench/lora_serving.py              # full run (about 25 min on 2 idle cores)
    python bench/lora_serving.py --quick      # smoke run: 1 repetition, L=32
    python bench/lora_serving.py --kernels stock,dense,dense+compile --dtype float32

Writes bench/results/lora_serving.json (after every cell) and prints the table. Load (`uptime`)
before and after, and the CPU share other processes took during each cell, are recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

from maft.adapter_store import AdapterStore, lora_name_for
from maft.debate import DebateConfig, Roster, run_debate
from maft.inference_client import InferenceClient, Sampling
from maft.processes import Child, clean_env, free_port, http_ok, inference_argv
from maft.tasks import get_task

SERVED_NAME = "SmolLM2-135M-Instruct"
# The servers' kernel settings; "dense+compile" also keeps torch.compile on (experimental).
KERNELS = {"stock": {"MAFT_CPU_LORA_KERNEL": "stock"},
           "dense": {"MAFT_CPU_LORA_KERNEL": "dense"},
           "dense+compile": {"MAFT_CPU_LORA_KERNEL": "dense", "MAFT_CPU_LORA_COMPILE": "1"}}
SOCIETIES = ("base", "one", "six")
TARGETS = {"one": {"tok_s_ratio": 0.85}, "six": {"tok_s_ratio": 0.8, "debate_ratio": 1.2}}
TASK_OPTIONS = {"terms": 2, "pattern": "+", "low": 0, "high": 30}


def uptime() -> str:
    """`uptime`'s line (load averages), as the other benchmarks report it."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@dataclass
class Server:
    """One inference service (`python -m services.inference serve`) with a kernel setting."""

    kernel: str
    child: Child
    url: str
    startup_s: float = 0.0

    @classmethod
    def start(cls, kernel: str, model: Path, store: Path, dtype: str | None,
              timeout: float = 900) -> Server:
        """Launch with product defaults plus the kernel (and dtype); wait for GET /health
        (with torch.compile the first start compiles: minutes)."""
        port = free_port()
        settings: dict[str, object] = dict(model_path=model, adapter_store=store, port=port,
                                           base_model_name=SERVED_NAME, host="127.0.0.1")
        env = clean_env(**settings, **({"dtype": dtype} if dtype else {}))
        env.update(PYTHONUNBUFFERED="1", **KERNELS[kernel])
        child = Child(f"vllm ({kernel})", inference_argv(), env,
                      store.parent / f"vllm-{kernel}.log").start()
        url = f"http://127.0.0.1:{port}"
        try:
            startup = child.wait_until(lambda: http_ok(f"{url}/health"), timeout)
        except Exception:
            child.stop()
            raise
        return cls(kernel, child, url, startup)

    def facts(self) -> dict[str, Any]:
        """What the log says the server runs: LoRA wrapper class and dtype."""
        text = self.child.log.read_text(errors="replace")
        wrapper = re.search(r"Using (PunicaWrapper\w+)\.", text)
        dtype = re.search(r"'dtype': '(\w+)'", text)
        return {"kernel": self.kernel, "startup_s": self.startup_s,
                "punica_wrapper": wrapper.group(1) if wrapper else None,
                "dtype": dtype.group(1) if dtype else None}


def publish_society(store: Path, model: Path) -> dict[str, Roster]:
    """Six copies of the no-op adapter under a society's names (the resolver serves only
    those), and the three rosters."""
    src, adapters = h.noop_lora(model), AdapterStore(store)
    gens = tuple(lora_name_for("generator", i, 1) for i in range(3))
    crits = tuple(lora_name_for("critic", i, 1) for i in range(3))
    for name in gens + crits:
        adapters.publish_if_absent(src, name, base_model_path=str(model), max_rank=h.MAX_RANK)
    return {"base": Roster.base(SERVED_NAME, 3, 0),
            "one": Roster(1, (gens[0],) * 3, (gens[0],) * 3, SERVED_NAME),
            "six": Roster(2, gens, crits, SERVED_NAME)}


async def debate_batch(client: InferenceClient, roster: Roster, questions: list[str],
                       config: DebateConfig) -> dict[str, Any]:
    """`questions` debated at once: wall time, CPU seconds of this process tree (the server
    included), per-debate latency, completion tokens."""
    task = get_task("arithmetic", **TASK_OPTIONS)

    async def one(question: str) -> dict[str, Any]:
        start = time.perf_counter()
        outcome = await run_debate(question, task=task, config=config, roster=roster,
                                   backend=client)
        return {"s": time.perf_counter() - start,
                "tokens": sum(t.completion_tokens for t in outcome.turns),
                "early_stops": sum(t.finish_reason != "length" for t in outcome.turns)}

    start, cpu = time.perf_counter(), h.cpu_snapshot()
    runs = await asyncio.gather(*(one(q) for q in questions))
    cpu_s = (h.cpu_snapshot()[2] - cpu[2]) / os.sysconf("SC_CLK_TCK")
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu_s, "runs": list(runs)}


async def measure_server(server: Server, rosters: dict[str, Roster], args: argparse.Namespace,
                         questions: list[str], report: dict[str, Any]) -> None:
    """Every society x concurrency cell on one server into report["cells"]."""
    config = DebateConfig(agents=3, rounds=2, sampling=Sampling(
        temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
        extra={"ignore_eos": True}))
    client = InferenceClient(server.url, timeout=3600)
    try:
        for society in SOCIETIES:  # warm-up: loads the adapters; not timed
            await debate_batch(client, rosters[society], questions[:1], config)
        for c in [int(x) for x in args.concurrency.split(",")]:
            batches: dict[str, list[dict[str, Any]]] = {s: [] for s in SOCIETIES}
            cpu = h.cpu_snapshot()
            for rep in range(args.reps):
                qs = [questions[(rep * c + i) % len(questions)] for i in range(c)]
                order = SOCIETIES[rep % 3:] + SOCIETIES[:rep % 3]
                for society in order:
                    batches[society].append(await debate_batch(client, rosters[society], qs,
                                                               config))
                h.log(f"  {server.kernel} c={c} rep {rep + 1}/{args.reps}: " + ", ".join(
                    f"{s} {batches[s][-1]['wall_s']:.1f} s" for s in SOCIETIES))
            others = h.others_cpu_share(cpu, h.cpu_snapshot())
            for society in SOCIETIES:
                report["cells"].append(cell(server.kernel, society, c, batches[society], others))
            save(args, report, complete=False)
    finally:
        await client.aclose()


def cell(kernel: str, society: str, c: int, batches: list[dict[str, Any]],
         others: float) -> dict[str, Any]:
    """One cell's figures from its batches."""
    runs = [r for b in batches for r in b["runs"]]
    tokens, wall = sum(r["tokens"] for r in runs), sum(b["wall_s"] for b in batches)
    cpu = sum(b["cpu_s"] for b in batches)
    return {"kernel": kernel, "society": society, "concurrency": c, "debates": len(runs),
            "completion_tokens": tokens, "wall_s": wall, "tok_s": tokens / wall,
            "cpu_s": cpu, "tok_per_cpu_s": tokens / cpu,
            "debate_s": statistics.median(r["s"] for r in runs),
            "early_stops": sum(r["early_stops"] for r in runs), "others_cpu_share": others,
            "batch_wall_s": [b["wall_s"] for b in batches]}


def add_ratios(cells: list[dict[str, Any]]) -> None:
    """Ratios to the base society of the same server and concurrency, and dense/stock."""
    index = {(x["kernel"], x["society"], x["concurrency"]): x for x in cells}
    for x in cells:
        base = index.get((x["kernel"], "base", x["concurrency"]))
        if base:
            x["tok_s_ratio"] = x["tok_s"] / base["tok_s"]
            x["debate_ratio"] = x["debate_s"] / base["debate_s"]
            x["cpu_ratio"] = x["tok_per_cpu_s"] / base["tok_per_cpu_s"]
        stock = index.get(("stock", x["society"], x["concurrency"]))
        if x["kernel"] != "stock" and stock:
            x["speedup_vs_stock"] = x["tok_s"] / stock["tok_s"]


def verdict(x: dict[str, Any], key: str) -> str:
    """'ok'/'MISS' against the target of `key` for this society ('' when none)."""
    target = TARGETS.get(x["society"], {}).get(key)
    if target is None or key not in x:
        return ""
    met = x[key] >= target if key == "tok_s_ratio" else x[key] <= target
    return f"{'>=' if key == 'tok_s_ratio' else '<='}{target} {'ok' if met else 'MISS'}"


def table(cells: list[dict[str, Any]]) -> str:
    """The printed comparison (targets apply to the dense kernel)."""
    head = (f"{'kernel':<14}{'society':<8}{'conc':>5}{'tok/s':>9}{'x base':>8}{'target':>14}"
            f"{'debate s':>10}{'x base':>8}{'target':>13}{'vs stock':>10}"
            f"{'tok/CPU-s':>11}{'x base':>8}{'other CPU':>11}")
    lines = [head, "-" * len(head)]
    kernels = list(KERNELS)
    for x in sorted(cells, key=lambda x: (x["concurrency"], kernels.index(x["kernel"]),
                                          SOCIETIES.index(x["society"]))):
        speedup = f"{x['speedup_vs_stock']:.2f}x" if "speedup_vs_stock" in x else ""
        lines.append(
            f"{x['kernel']:<14}{x['society']:<8}{x['concurrency']:>5}{x['tok_s']:>9.1f}"
            f"{x.get('tok_s_ratio', 0):>8.2f}{verdict(x, 'tok_s_ratio'):>14}"
            f"{x['debate_s']:>10.2f}{x.get('debate_ratio', 0):>8.2f}"
            f"{verdict(x, 'debate_ratio'):>13}{speedup:>10}"
            f"{x['tok_per_cpu_s']:>11.1f}{x.get('cpu_ratio', 0):>8.2f}"
            f"{100 * x['others_cpu_share']:>10.0f}%")
    return "\n".join(lines)


def save(args: argparse.Namespace, report: dict[str, Any], *, complete: bool) -> None:
    """Write the JSON report (also after each cell, so a long run leaves partial results)."""
    add_ratios(report["cells"])
    report.update(complete=complete, args={k: str(v) for k, v in vars(args).items()},
                  environment=h.environment(), uptime_end=uptime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def parse_args() -> argparse.Namespace:
    """Command-line flags (--quick: 1 repetition, L=32)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: --reps 1 --max-tokens 32")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per cell")
    p.add_argument("--max-tokens", type=int, default=64, help="L, tokens per response")
    p.add_argument("--temperature", type=float, default=0.7, help="the experiment's: 0.7")
    p.add_argument("--top-p", type=float, default=0.9, help="the experiment's: 0.9")
    p.add_argument("--concurrency", default="1,8", help="debates in flight, comma-separated")
    p.add_argument("--kernels", default="stock,dense",
                   help=f"comma-separated, run in this order: {', '.join(KERNELS)}")
    p.add_argument("--dtype", help="MAFT_DTYPE for the servers (default: the product's)")
    p.add_argument("--model-path", type=Path, help="base model folder (default: SmolLM2, cached)")
    p.add_argument("--out", type=Path, default=h.REPO_ROOT / "bench/results/lora_serving.json")
    args = p.parse_args()
    if unknown := set(args.kernels.split(",")) - set(KERNELS):
        p.error(f"unknown kernels {sorted(unknown)}")
    if args.quick:
        args.reps, args.max_tokens = 1, 32
    return args


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so `finally` stops the server


def main() -> None:
    """Each kernel's server in turn: warm up, measure every cell, stop; table and JSON."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    report: dict[str, Any] = {"uptime_start": uptime(), "servers": [], "cells": [],
                              "task": {"name": "arithmetic", **TASK_OPTIONS}}
    h.log(f"load before start: {report['uptime_start']} ({os.cpu_count()} CPUs; other work on "
        "the machine skews every number)")
    model = h.smollm2_dir(args.model_path)
    questions = [p.question for p in get_task("arithmetic", **TASK_OPTIONS).problems(
        16, seed=2, split="test")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="maft-lora-bench-") as tmp:
        store = Path(tmp) / "adapters"
        rosters = publish_society(store, model)
        for kernel in args.kernels.split(","):
            h.log(f"starting vLLM with MAFT_CPU_LORA_KERNEL={kernel}")
            server = Server.start(kernel, model, store, args.dtype)
            try:
                facts = server.facts()
                report["servers"].append(facts)
                h.log(f"  ready in {server.startup_s:.0f} s: {facts}")
                expected = "PunicaWrapperCPU" if kernel == "stock" else "PunicaWrapperDenseCPU"
                if facts["punica_wrapper"] != expected:
                    raise SystemExit(f"{kernel} server runs {facts['punica_wrapper']}")
                asyncio.run(measure_server(server, rosters, args, questions, report))
            finally:
                server.child.stop()
    report["bench_seconds"] = time.perf_counter() - started
    save(args, report, complete=True)
    print(table(report["cells"]))
    print(f"\nload: start {report['uptime_start']}\n      end   {report['uptime_end']}")
    h.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
