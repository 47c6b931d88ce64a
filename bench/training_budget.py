"""The training budget per adapter (issue 10): how many optimizer steps an agent with a small
dataset needs. Chooses the defaults of `min_steps` (trainer and harness) from measurements.

On SmolLM2-135M-Instruct (vLLM on this CPU) and the arithmetic task a+b, 0-29:
1. 3-agent, 2-round debates (T 0.7) over `--train` train questions, curated with the product's
   rules (strict majority, no truncated targets): generator 0's dataset is a real MAFT dataset.
2. For each `--min-steps` value, a fresh LoRA (r 8, lr 2e-4, batch 4; repeats capped at
   `--max-epochs`) is trained on it, and agent 0 alone answers `--test` test questions (T 0.7,
   one sample each, the same questions for every budget).
Reported per budget: optimizer steps, epochs, loss of the first and last epoch, test accuracy
with its standard error and the paired difference to the untrained agent, and the share of
answers cut at max_tokens.

    python bench/training_budget.py [--train 150] [--test 200] [--min-steps 0,16,32,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

from maft.adapter_store import AdapterStore, lora_name_for
from maft.curation import CurationConfig, curate
from maft.debate import DebateConfig, DebateOutcome, Roster
from maft.enums import Role
from maft.inference_client import InferenceClient, Sampling
from maft.processes import Child, clean_env, free_port, http_ok, inference_argv
from maft.records import DebateRecord, TurnRecord
from maft.scoring import EvalSet, score
from maft.tasks import get_task

TASK = get_task("arithmetic", terms=2, pattern="+", low=0, high=30)
SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_tokens=256)
BASE = "SmolLM2-135M-Instruct"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def record(index: int, question: str, outcome: DebateOutcome) -> DebateRecord:
    """A finished debate as curation reads it."""
    turns = tuple(TurnRecord(t.round, t.agent_index, t.role, t.lora_name, tuple(t.messages),
                             t.text, t.answer, t.finish_reason) for t in outcome.turns)
    return DebateRecord(str(index), question, TASK.name, T0 + timedelta(seconds=index), 0, 3, 2,
                        outcome.final_answer, outcome.consensus, None, None, turns)


async def debates(client: InferenceClient, n: int) -> list[DebateRecord]:
    """Real 3x2 debates of the base model on `n` train questions."""
    problems = TASK.problems(n, seed=11, split="train")
    found: dict[int, DebateOutcome] = {}
    await score(Roster.base(BASE, 3), EvalSet("train", TASK, problems),
                DebateConfig(agents=3, rounds=2, sampling=SAMPLING), client, 16,
                on_outcome=found.__setitem__)
    return [record(i, problems[i].question, found[i]) for i in range(n)]


def train(model: Path, examples: list[dict[str, Any]], out: Path, min_steps: int,
          max_epochs: int) -> dict[str, Any]:
    """A fresh LoRA on `examples` with this budget; what the loop did."""
    from services.trainer.lora.config import ChatExample, TrainConfig
    from services.trainer.lora.loop import train_lora

    chats = [ChatExample(e["messages"], e["train_on"]) for e in examples]
    result = train_lora(base_model_path=model, examples=chats, out_dir=out,
                        config=TrainConfig(min_steps=min_steps, max_epochs=max_epochs))
    return {"steps": result.steps, "epochs": len(result.epoch_losses),
            "epoch_losses": [round(x, 4) for x in result.epoch_losses],
            "seconds": round(result.seconds, 1)}


async def single_answers(client: InferenceClient, model: str, n: int) -> list[dict[str, Any]]:
    """Agent `model` alone on `n` test questions: right or not, cut or not."""
    problems = TASK.problems(n, seed=12, split="test")
    found: dict[int, DebateOutcome] = {}
    await score(Roster(0, (model,), (model,), BASE), EvalSet("test", TASK, problems),
                DebateConfig(agents=1, rounds=1, sampling=SAMPLING), client, 32,
                on_outcome=found.__setitem__)
    return [{"right": TASK.is_correct(found[i].final_answer, problems[i].answer),
             "cut": found[i].turns[0].finish_reason == "length"} for i in range(n)]


def summary(rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy, its standard error, the paired difference to the base model, the cut share."""
    n = len(rows)
    acc = sum(r["right"] for r in rows) / n
    diffs = [int(r["right"]) - int(b["right"]) for r, b in zip(rows, base, strict=True)]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / max(1, n - 1)
    return {"accuracy": acc, "stderr": math.sqrt(acc * (1 - acc) / n), "vs_base": mean,
            "vs_base_stderr": math.sqrt(var / n), "cut": sum(r["cut"] for r in rows) / n}


def start_server(model: Path, store: Path) -> tuple[Child, str]:
    """vLLM on the model and the sweep's adapter store, as the launchers start it."""
    port = free_port()
    env = clean_env(model_path=model, adapter_store=store, base_model_name=BASE, port=port)
    env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
    child = Child("inference", inference_argv(), env, store.parent / "vllm.log").start()
    url = f"http://127.0.0.1:{port}"
    child.wait_until(lambda: http_ok(f"{url}/health"), 600, poll=1)
    return child, url


async def sweep(args: argparse.Namespace, model: Path, work: Path, url: str) -> dict[str, Any]:
    """Collect, curate, then train and evaluate every budget."""
    client = InferenceClient(url, timeout=1800, connect_timeout=120)
    try:
        curation = curate(await debates(client, args.train), task=TASK, agents=3,
                          config=CurationConfig())
        data = curation.datasets["generator", 0]
        examples = [{"messages": list(e.messages), "train_on": e.train_on}
                    for e in data.examples]
        base = await single_answers(client, BASE, args.test)
        report: dict[str, Any] = {"curation": curation.stats, "examples": len(examples),
                                  "budgets": {}, "base": summary(base, base)}
        for version, budget in enumerate(args.min_steps, start=1):
            name = lora_name_for(Role.GENERATOR, 0, version)
            fit = await asyncio.to_thread(train, model, examples, work / name, budget,
                                          args.max_epochs)
            AdapterStore(work / "store").publish(work / name, name, base_model_path=str(model),
                                                 max_rank=16)
            rows = await single_answers(client, name, args.test)
            report["budgets"][str(budget)] = {**fit, **summary(rows, base)}
            h.log(f"min_steps {budget}: {report['budgets'][str(budget)]}")
        return report
    finally:
        await client.aclose()


def table(report: dict[str, Any]) -> str:
    """The printed table."""
    b = report["base"]
    lines = [f"generator 0's dataset: {report['examples']} examples", "min_steps | steps | "
             "epochs | loss first -> last epoch | accuracy | vs untrained (paired) | cut",
             f"untrained |     0 |      0 | – | {100 * b['accuracy']:.1f} ± "
             f"{100 * b['stderr']:.1f} | – | {100 * b['cut']:.0f} %"]
    for budget, r in report["budgets"].items():
        losses = f"{r['epoch_losses'][0]:.3f} -> {r['epoch_losses'][-1]:.3f}"
        lines.append(f"{budget:>9} | {r['steps']:5d} | {r['epochs']:6d} | {losses} | "
                     f"{100 * r['accuracy']:.1f} ± {100 * r['stderr']:.1f} | "
                     f"{100 * r['vs_base']:+.1f} ± {100 * r['vs_base_stderr']:.1f} | "
                     f"{100 * r['cut']:.0f} %")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=150)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--min-steps", type=lambda s: [int(x) for x in s.split(",")],
                        default=[0, 16, 32, 64])
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--model-path", type=Path)
    parser.add_argument("--out", type=Path, default=h.REPO_ROOT / "bench/results/"
                        "training_budget.json")
    return parser.parse_args()


def main() -> None:
    """Run the sweep; print the table; write the JSON."""
    args = parse_args()
    # SIGTERM -> SystemExit, so the `finally` blocks stop the servers this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    model = h.smollm2_dir(args.model_path)
    work = Path(tempfile.mkdtemp(prefix="maft-budget-"))
    server, url = start_server(model, work / "store")
    started = time.perf_counter()
    try:
        report = asyncio.run(sweep(args, model, work, url))
    finally:
        server.stop()
    report.update(environment=h.environment(), args={k: str(v) for k, v in vars(args).items()},
                  wall_s=round(time.perf_counter() - started))
    print(table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
