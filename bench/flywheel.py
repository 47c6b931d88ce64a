"""The product's own flywheel, end to end (issue 11): traffic -> stored debates (some with
feedback) -> automatic retraining by the trainer worker -> the evaluation gate -> promotion and
hot-load -> better (or not) answers.

It starts the embedded default (`maft up`: vLLM, gateway, trainer worker with beat, SQLite) with
auto-retraining on, then sends simulated product traffic: debates on train-split questions of
the task, and for a share `--feedback` of them the correct answer as feedback (a team that
labels some of its traffic). Whenever the active society changes, the new society answers one
fixed held-out set (test-split questions, the same for every version, scored straight against
vLLM so that these debates never become training data), and its debate latency is measured.

    python bench/flywheel.py --feedback 0.3 --promotions 3 [--budget-min 150]

Writes a table, `bench/results/flywheel-<feedback>.json` and a PNG of held-out accuracy against
society version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h

from maft.debate import DebateConfig, DebateOutcome, Roster
from maft.enums import Role
from maft.inference_client import InferenceClient, Sampling
from maft.scoring import EvalSet, score
from maft.tasks import Problem, get_task

TASK_OPTIONS = {"terms": 2, "pattern": "+", "low": 0, "high": 30}
TASK = get_task("arithmetic", **TASK_OPTIONS)


def product_settings(args: argparse.Namespace) -> dict[str, object]:
    """MAFT_* settings of the product under test: auto-retraining and the gate on this task."""
    return dict(auto_retrain="true", auto_retrain_threshold=args.threshold,
                auto_retrain_interval_s=15, eval_task="arithmetic",
                eval_task_options=json.dumps(TASK_OPTIONS), eval_size=args.gate_size,
                eval_max_tokens=args.max_tokens, default_temperature=args.temperature,
                default_max_tokens=args.max_tokens, default_task="arithmetic")


async def post_debate(client: httpx.AsyncClient, problem: Problem, feedback: bool,
                      ) -> dict[str, Any]:
    """One debate of traffic (and its feedback); what the client saw."""
    start = time.perf_counter()
    response = await client.post("/v1/debates", json={"question": problem.question,
                                                       "task": "arithmetic"})
    seen: dict[str, Any] = {"status": response.status_code,
                            "s": time.perf_counter() - start}
    if response.status_code == 201 and feedback:
        debate_id = response.json()["id"]
        label = await client.post(f"/v1/debates/{debate_id}/feedback",
                                  json={"correct_answer": problem.answer})
        seen["feedback"] = label.status_code
    if response.status_code == 201:
        seen["society_version"] = response.json()["society_version"]
    return seen


async def traffic(client: httpx.AsyncClient, args: argparse.Namespace, stop: asyncio.Event,
                  log: list[dict[str, Any]]) -> None:
    """`--concurrency` clients sending debates until `stop` is set."""
    problems = TASK.problems(args.train_questions, seed=args.seed, split="train")
    rng = random.Random(args.seed)

    async def client_loop() -> None:
        while not stop.is_set():
            problem = rng.choice(problems)
            log.append(await post_debate(client, problem, rng.random() < args.feedback))

    await asyncio.gather(*(client_loop() for _ in range(args.concurrency)))


def roster_of(adapters: dict[str, Any], base: str) -> Roster:
    """The active society's roster, from GET /v1/adapters."""
    active = next(s for s in adapters["societies"] if s["active"])
    if active["kind"] == "base":
        return Roster.base(base, 3, active["version"])
    names = {role: [a["lora_name"] for a in sorted(active["adapters"],
                                                     key=lambda a: a["agent_index"])
                    if a["role"] == role] for role in (Role.GENERATOR, Role.CRITIC)}
    return Roster(active["version"], tuple(names[Role.GENERATOR]), tuple(names[Role.CRITIC]),
                  base)


async def held_out(product: h.Product, roster: Roster, args: argparse.Namespace,
                   problems: list[Problem]) -> dict[str, Any]:
    """The society's accuracy on the fixed held-out set, and its debate latency."""
    latencies: list[float] = []

    def on_outcome(_: int, outcome: DebateOutcome) -> None:
        latencies.append(sum(t.latency_ms for t in outcome.turns) / 1000)

    client = InferenceClient(product.inference_url, timeout=1800, connect_timeout=120)
    config = DebateConfig(agents=3, rounds=2, sampling=Sampling(
        temperature=args.temperature, top_p=0.9, max_tokens=args.max_tokens))
    try:
        start = time.perf_counter()
        result = await score(roster, EvalSet("held-out", TASK, problems), config, client,
                             args.eval_concurrency, on_outcome=on_outcome)
    finally:
        await client.aclose()
    per_question = [int(TASK.is_correct(a, p.answer))
                    for a, p in zip(result["answers"], problems, strict=True)]
    return {"version": roster.society_version, "accuracy": result["accuracy"],
            "stderr": result["stderr"], "per_question": per_question,
            "wall_s": time.perf_counter() - start,
            "model_time_per_debate_s": sum(latencies) / len(latencies)}


def paired(a: list[int], b: list[int]) -> dict[str, float]:
    """Mean of a - b over the same questions, with its standard error."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1)
    return {"diff": mean, "stderr": math.sqrt(var / len(diffs))}


async def wait_for_promotion(client: httpx.AsyncClient, version: int, deadline: float) -> int:
    """Poll until the active society is not `version` (or the time budget ends)."""
    while time.monotonic() < deadline:
        adapters = (await client.get("/v1/adapters")).json()
        if adapters["active_version"] != version:
            return int(adapters["active_version"])
        await asyncio.sleep(10)
    return version


async def flywheel(product: h.Product, args: argparse.Namespace) -> dict[str, Any]:
    """Traffic until `--promotions` promotions (or the time budget); held-out after each."""
    base, _ = product.base_model()
    problems = TASK.problems(args.held_out, seed=args.seed + 1, split="test")
    versions = [await held_out(product, Roster.base(base, 3), args, problems)]
    h.log(f"v0: held-out accuracy {versions[0]['accuracy']:.3f}")
    deadline, log = time.monotonic() + 60 * args.budget_min, list[dict[str, Any]]()
    async with httpx.AsyncClient(base_url=product.gateway_url, timeout=1800) as client:
        while len(versions) <= args.promotions and time.monotonic() < deadline:
            stop = asyncio.Event()
            sender = asyncio.create_task(traffic(client, args, stop, log))
            version = await wait_for_promotion(client, versions[-1]["version"], deadline)
            stop.set()
            await sender
            if version == versions[-1]["version"]:
                break
            roster = roster_of((await client.get("/v1/adapters")).json(), base)
            versions.append(await held_out(product, roster, args, problems))
            h.log(f"v{version}: held-out accuracy {versions[-1]['accuracy']:.3f} after "
                  f"{len(log)} debates of traffic")
        runs = (await client.get("/v1/training-runs", params={"limit": 50})).json()["data"]
    return {"versions": versions, "traffic": log, "runs": [summarize_run(r) for r in runs]}


def summarize_run(run: dict[str, Any]) -> dict[str, Any]:
    """What a training run did, without its bulky statistics."""
    evaluation = run.get("evaluation") or {}
    return {"id": run["id"], "status": run["status"], "trigger": run["trigger"],
            "decision": run["decision"], "candidate": run["candidate_society_version"],
            "gate": {k: evaluation.get(k, {}).get("accuracy") for k in ("active", "candidate")},
            "label_sources": run["dataset_stats"].get("tasks", {}).get("arithmetic", {}).get(
                "label_sources"), "error": run["error"]}


def plot(report: dict[str, Any], path: Path) -> None:
    """Held-out accuracy against society version, with standard errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    versions = report["versions"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar([f"v{v['version']}" for v in versions], [100 * v["accuracy"] for v in versions],
                yerr=[100 * v["stderr"] for v in versions], marker="o", capsize=4)
    ax.set_xlabel("active society (in promotion order)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"flywheel, feedback on {100 * report['args']['feedback']:.0f} % of traffic")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(report: dict[str, Any]) -> str:
    """The printed table: one row per active society."""
    first = report["versions"][0]["per_question"]
    lines = ["version | held-out accuracy | vs v0 (paired) | model time per debate"]
    for v in report["versions"]:
        d = paired(v["per_question"], first)
        lines.append(f"v{v['version']:<6} | {100 * v['accuracy']:.1f} ± {100 * v['stderr']:.1f}"
                     f" | {100 * d['diff']:+.1f} ± {100 * d['stderr']:.1f} | "
                     f"{v['model_time_per_debate_s']:.1f} s")
    served = [t for t in report["traffic"] if t["status"] == 201]
    lines.append(f"traffic: {len(report['traffic'])} debates sent, {len(served)} answered; "
                 f"runs: " + ", ".join(f"{r['decision']}" for r in report["runs"]))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--feedback", type=float, default=0.3, help="share of debates labelled")
    p.add_argument("--promotions", type=int, default=3)
    p.add_argument("--threshold", type=int, default=60, help="new debates that start a run")
    p.add_argument("--gate-size", type=int, default=40, help="the gate's held-out questions")
    p.add_argument("--held-out", type=int, default=150, help="this benchmark's held-out set")
    p.add_argument("--train-questions", type=int, default=600)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--eval-concurrency", type=int, default=16)
    p.add_argument("--budget-min", type=float, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-path", type=Path)
    p.add_argument("--out", type=Path)
    return p.parse_args()


def main() -> None:
    """Run the flywheel; print the table; write the JSON and the PNG."""
    args = parse_args()
    # SIGTERM -> SystemExit, so the `finally` blocks stop the servers this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.out or h.REPO_ROOT / f"bench/results/flywheel-{args.feedback:g}.json"
    started = time.perf_counter()
    product = h.Product.start(h.smollm2_dir(args.model_path), settings=product_settings(args))
    try:
        report = asyncio.run(flywheel(product, args))
    finally:
        product.stop()
    report.update(args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                  environment=h.environment(), wall_s=round(time.perf_counter() - started))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot(report, out.with_suffix(".png"))
    print(table(report))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
