"""Trainer benchmarks. Metric 1: LoRA training throughput, our loop against transformers' Trainer.

Same data, model and settings for every runner: SmolLM2-135M-Instruct, LoRA r=8 on q/k/v/o,
batch 4, lr 2e-4, GSM8K questions (the product's generation prompt) with their reference
solutions as the assistant turn, tokenized once by services.trainer's encoder, so every runner
sees the same tokens and labels. `--steps x --batch-size` defaults to `--examples`: one epoch,
so every runner trains on exactly the same tokens and loss tokens. Runners:

- ours:            services.trainer.lora.loop.train_lora
- trainer:         transformers.Trainer + PEFT, default (random) sampler
- trainer-grouped: the same with train_sampling_strategy="group_by_length" (padding like ours)

Each runner is its own subprocess (peak RSS is per process), warms up for `--warmup-steps`
steps, then trains again from a fresh model, timed from the first to the last step (model
loading and saving excluded), in wall and in process CPU seconds (the latter is steadier on a
shared machine). Runners alternate order per repetition; medians are reported.
Metric 2: seconds from society promotion (the active-society pointer flipped) to the first
debate served by the new society, on the embedded product (bench/_promotion.py).

    python bench/train_throughput.py [--steps 16] [--examples 64] [--model-path DIR] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "bench")]
import _harness as h  # noqa: E402 (the path above makes it importable)

RUNNERS = ("ours", "trainer", "trainer-grouped")
GSM8K = Path(os.environ.get("MAFT_GSM8K", REPO_ROOT.parent / "shared/datasets/gsm8k/train.jsonl"))


def chats(path: Path, n: int) -> list[list[dict[str, str]]]:
    """The first `n` GSM8K problems as (generation prompt, reference solution) chats."""
    from maft.tasks.gsm8k import GSM8KTask

    task, out = GSM8KTask(str(path)), []
    for line in path.read_text().splitlines()[:n]:
        row = json.loads(line)
        steps, answer = row["answer"].rsplit("####", 1)
        # Calculator annotations (<<48/2=24>>) are not something agents write.
        solution = re.sub(r"<<[^>]*>>", "", steps).strip()
        messages = [*task.generation_messages(row["question"]), {
            "role": "assistant", "content": f"{solution}\n\\boxed{{{answer.strip()}}}"}]
        out.append(messages)
    return out


# ---- workers (one runner per process) ---------------------------------------------------------

def run_ours(spec: dict[str, Any], steps: int) -> dict[str, Any]:
    """train_lora for `steps` steps; its own timing excludes loading and saving."""
    from services.trainer.lora.loop import ChatExample, TrainConfig, train_lora

    config = TrainConfig(batch_size=spec["batch_size"], max_steps=steps, dtype=spec["dtype"],
                         threads=spec["threads"], seed=spec["seed"], device=spec["device"])
    with tempfile.TemporaryDirectory() as out:
        result = train_lora(base_model_path=Path(spec["model"]), out_dir=Path(out),
                            examples=[ChatExample(m) for m in spec["chats"]], config=config)
    return {"seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "steps": result.steps,
            "tokens": result.train_tokens, "loss_tokens": result.loss_tokens,
            "first_loss": result.first_loss, "final_loss": result.final_loss}


class _Counting:
    """DataCollatorForSeq2Seq that counts the real tokens and loss tokens it hands out."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorForSeq2Seq

        self.inner = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        self.tokens = self.loss_tokens = 0

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.inner(features)
        self.tokens += int(batch["attention_mask"].sum())
        self.loss_tokens += int((batch["labels"][:, 1:] != -100).sum())
        return batch


def _trainer_data(tokenizer: Any, spec: dict[str, Any]) -> list[dict[str, list[int]]]:
    """The examples as the Trainer takes them, encoded exactly as ours."""
    from services.trainer.lora.loop import ChatExample, encode_example

    rows = []
    for messages in spec["chats"]:
        ids, labels = encode_example(tokenizer, ChatExample(messages), 1024)
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    return rows


def _trainer_args(out: str, spec: dict[str, Any], steps: int, grouped: bool) -> Any:
    """TrainingArguments matching our defaults (AdamW, linear, 3 % warmup, clip 1.0)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=out, per_device_train_batch_size=spec["batch_size"], max_steps=steps,
        learning_rate=2e-4, warmup_steps=0.03, lr_scheduler_type="linear", weight_decay=0.0,
        max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to="none",
        seed=spec["seed"], use_cpu=spec["device"] == "cpu", dataloader_num_workers=0,
        disable_tqdm=True, remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if grouped else "random")


def trainer_once(spec: dict[str, Any], steps: int, grouped: bool) -> dict[str, Any]:
    """A fresh PEFT model trained by transformers' Trainer for `steps` steps."""
    import torch
    import transformers as tf
    from peft import get_peft_model

    from services.trainer.lora.loop import LoraConfigSpec, lora_config

    tokenizer = tf.AutoTokenizer.from_pretrained(spec["model"])
    model = tf.AutoModelForCausalLM.from_pretrained(spec["model"],
                                                    dtype=getattr(torch, spec["dtype"]))
    model.config.use_cache = False
    torch.manual_seed(spec["seed"])
    peft_model = get_peft_model(model, lora_config(LoraConfigSpec()))
    marks: dict[str, float] = {}

    class Clock(tf.TrainerCallback):
        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            marks["start"], marks["cpu_start"] = time.perf_counter(), time.process_time()

        def on_train_end(self, *args: Any, **kwargs: Any) -> None:
            marks["end"], marks["cpu_end"] = time.perf_counter(), time.process_time()

    collator = _Counting(tokenizer)
    with tempfile.TemporaryDirectory() as out:
        trainer = tf.Trainer(model=peft_model, args=_trainer_args(out, spec, steps, grouped),
                             train_dataset=_trainer_data(tokenizer, spec),
                             data_collator=collator, callbacks=[Clock()])
        trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"seconds": marks["end"] - marks["start"],
            "cpu_seconds": marks["cpu_end"] - marks["cpu_start"], "steps": steps,
            "tokens": collator.tokens, "loss_tokens": collator.loss_tokens,
            "first_loss": losses[0], "final_loss": losses[-1]}


def worker(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then the timed run, of runner `name` in this process."""
    from services.trainer.lora.runtime import configure_threads

    threads = configure_threads(spec["threads"])

    def once(steps: int) -> dict[str, Any]:
        if name == "ours":
            return run_ours(spec, steps)
        return trainer_once(spec, steps, grouped=name == "trainer-grouped")

    if spec["warmup_steps"]:
        once(spec["warmup_steps"])
    result = once(spec["steps"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spec["device"] == "cuda":  # device memory is what limits a GPU run
        import torch

        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    return {"runner": name, **result, "tokens_per_s": result["tokens"] / result["seconds"],
            "tokens_per_cpu_s": result["tokens"] / result["cpu_seconds"],
            "peak_rss_mb": round(peak_mb), "threads": threads}


# ---- orchestration ----------------------------------------------------------------------------

def run_worker(name: str, spec_file: Path) -> dict[str, Any]:
    """Runner `name` in a fresh interpreter; its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result_file:
        subprocess.run([sys.executable, __file__, "--worker", name, "--spec", str(spec_file),
                        "--result", result_file.name], check=True, cwd=REPO_ROOT)
        result: dict[str, Any] = json.loads(Path(result_file.name).read_text())
    print(f"  {name:16s} {result['tokens_per_s']:7.1f} tokens/s, "
          f"{result['tokens_per_cpu_s']:7.1f} per CPU-s ({result['seconds']:.1f} s, "
          f"loss {result['first_loss']:.3f} -> {result['final_loss']:.3f})", flush=True)
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians per runner and ratios ours / that runner (token counts are equal by design)."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["runner"] for r in runs):
        mine = [r for r in runs if r["runner"] == name]
        out[name] = {key: statistics.median(r[key] for r in mine)
                     for key in ("tokens_per_s", "tokens_per_cpu_s", "seconds")}
        out[name].update(tokens=mine[0]["tokens"], loss_tokens=mine[0]["loss_tokens"],
                         peak_rss_mb=max(r["peak_rss_mb"] for r in mine), runs=len(mine))
    for entry in out.values():
        for key in ("tokens_per_s", "tokens_per_cpu_s"):
            entry[f"ours_ratio_{key}"] = out["ours"][key] / entry[key] if "ours" in out else None
    return out


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The report table; ratios are ours / that runner, per wall second and per CPU second."""
    lines = [f"{'runner':16s} {'tokens/s':>9s} {'ours/this':>9s} {'tok/CPU-s':>9s} "
             f"{'ours/this':>9s} {'tokens':>7s} {'loss tok':>8s} {'peak MB':>11s}"]
    for name, s in summary.items():
        wall, cpu = (f"{s[f'ours_ratio_{k}'] or 0:.2f}" for k in ("tokens_per_s",
                                                                 "tokens_per_cpu_s"))
        lines.append(f"{name:16s} {s['tokens_per_s']:9.1f} {wall:>9s} "
                     f"{s['tokens_per_cpu_s']:9.1f} {cpu:>9s} {s['tokens']:7d} "
                     f"{s['loss_tokens']:8d} {s['peak_rss_mb']:11d}")
    return "\n".join(lines)


def throughput(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    """Metric 1: every runner `--repeats` times, alternating order; runs and medians."""
    from services.trainer.lora.runtime import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = str(resolve_dtype(args.dtype, device)).removeprefix("torch.")
    examples = args.examples or args.steps * args.batch_size
    spec = {"model": str(model), "chats": chats(args.gsm8k, examples), "steps": args.steps,
            "batch_size": args.batch_size, "dtype": dtype, "threads": args.threads,
            "seed": args.seed, "warmup_steps": args.warmup_steps, "device": device.type}
    runs: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile("w", suffix=".json") as spec_file:
        json.dump(spec, spec_file)
        spec_file.flush()
        for rep in range(args.repeats):
            order = args.runners if rep % 2 == 0 else args.runners[::-1]
            print(f"repetition {rep + 1}/{args.repeats}", flush=True)
            runs.extend(run_worker(name, Path(spec_file.name)) for name in order)
    settings = {k: v for k, v in spec.items() if k != "chats"} | {"examples": examples}
    return {"settings": settings, "runs": runs, "summary": summarise(runs)}


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-path", type=Path, help="HF model folder (default: SmolLM2 cached)")
    p.add_argument("--steps", type=int, default=16, help="timed optimizer steps per runner")
    p.add_argument("--examples", type=int, help="chat examples (default: steps x batch size)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=1, help="runs per runner (medians)")
    p.add_argument("--runners", type=lambda s: s.split(","), default=list(RUNNERS))
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--dtype", default="auto", help="base weights: auto|bfloat16|float32")
    p.add_argument("--threads", type=int, help="torch threads (default: available cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gsm8k", type=Path, default=GSM8K)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/train_throughput.json")
    p.add_argument("--skip-promotion", action="store_true", help="metric 1 only")
    p.add_argument("--worker", choices=RUNNERS, help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    """Run the benchmark (or, with --worker, one runner of it)."""
    args = parse_args()
    if args.worker:
        spec = json.loads(args.spec.read_text())
        args.result.write_text(json.dumps(worker(args.worker, spec)))
        return
    model = h.smollm2_dir(args.model_path)
    env = h.environment()
    metrics = throughput(args, model)
    env["loadavg_after"] = os.getloadavg()
    report: dict[str, Any] = {"environment": env, "train_throughput": metrics}
    print(table(metrics["summary"]))
    if not args.skip_promotion:
        from _promotion import promotion_table, promotion_to_first_debate

        report["promotion_to_first_debate"] = promotion_to_first_debate(model)
        print(promotion_table(report["promotion_to_first_debate"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
