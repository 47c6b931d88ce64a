"""`python -m experiment run ... | report <dir>` (also `maft experiment ...`).

Every option's default is the matching field's default in experiment.config.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from experiment.config import (
    DEFAULT_TASK_OPTIONS,
    ExperimentConfig,
    Runtime,
    TrainingConfig,
    resolve_methods,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce the MAFT paper's comparison on this stack (method.md).")
Opt = typer.Option
_C, _T = ExperimentConfig(), TrainingConfig()
_R: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Runtime)}


@app.command()
def run(
    out: Annotated[Path, Opt(help="Output folder; rerun the same command to resume.")],
    model_path: Annotated[Path | None, Opt(help="Base model folder (HF format); default: "
                                           "SmolLM2-135M-Instruct, materialised once.")] = None,
    task: Annotated[str, Opt(help="arithmetic | gsm8k | ...")] = _C.task,
    task_options: Annotated[str, Opt(help="JSON, e.g. '{\"path\": \"train.jsonl\"}' for "
                                     "gsm8k")] = json.dumps(DEFAULT_TASK_OPTIONS),
    train_size: int = _C.train_size, test_size: int = _C.test_size,
    train_seed: int = _C.train_seed, test_seed: int = _C.test_seed,
    iterations: int = _C.iterations,
    methods: Annotated[str, Opt(help="Comma list or 'all': base, majority, debate, "
                                "majority_ft, star, single_ft, maft, maft_wo_critic, "
                                "maft_wo_summary.")] = ",".join(_C.methods),
    agents: int = _C.agents, rounds: int = _C.rounds,
    summarize: Annotated[bool, Opt(help="Main debate summarises others' answers (paper); "
                                   "default: concatenation (the product's default).")]
    = _C.summarize,
    temperature: float = _C.temperature, top_p: float = _C.top_p,
    max_tokens: int = _C.max_tokens,
    sampling_extra: Annotated[str, Opt(help="JSON of extra vLLM sampling fields.")] = "{}",
    w: float = _C.w, min_consensus: float = _C.min_consensus,
    labels: Annotated[str, Opt(help="Train labels: vote (the paper: unsupervised), reference "
                               "(every train question's answer) or feedback (a share of them; "
                               "the rest vote).")] = _C.labels,
    feedback_share: Annotated[float, Opt(help="With --labels feedback: share of the train "
                                         "questions (a seeded draw) labelled by their "
                                         "reference answer.")] = _C.feedback_share,
    majority: Annotated[str, Opt(help="strict: a vote labels only when more than half the "
                                 "agents agree; plurality: the old rule.")] = _C.majority,
    critic_loss: Annotated[str, Opt(help="Critic examples' loss: all_assistant or final "
                                    "turn.")] = _C.critic_loss,
    seed: int = _C.seed,
    lora_rank: int = _T.rank, lora_alpha: int = _T.alpha,
    learning_rate: float = _T.learning_rate, epochs: int = _T.epochs,
    train_batch_size: int = _T.batch_size, max_seq_len: int = _T.max_seq_len,
    train_dtype: str = _T.dtype, max_steps: int | None = _T.max_steps,
    min_steps: Annotated[int, Opt(help="Repeat epochs of a small dataset until this many "
                                  "optimizer steps (at most --max-epochs passes).")]
    = _T.min_steps,
    max_epochs: int = _T.max_epochs,
    diversity_questions: Annotated[int, Opt(help="Test questions for cross-agent NLL.")]
    = _C.diversity_questions,
    nll: bool = _C.nll, embeddings: bool = _C.embeddings,
    inference_url: Annotated[str | None, Opt(help="Use this running server (default: launch "
                                             "our own).")] = None,
    adapter_store: Annotated[Path | None, Opt(help="That server's adapter store.")] = None,
    served_model_path: Annotated[str | None, Opt(help="That server's --model string.")] = None,
    base_model_name: str = _R["base_model_name"],
    max_lora_rank: int = _R["max_lora_rank"], max_loras: int = _R["max_loras"],
    max_model_len: int = _R["max_model_len"], inference_dtype: str = _R["inference_dtype"],
    cpu_kvcache_gib: int = _R["cpu_kvcache_gib"],
    tensor_parallel_size: int = _R["tensor_parallel_size"],
    gpu_memory_utilization: float = _R["gpu_memory_utilization"],
    concurrency: Annotated[int, Opt(help="Debates in flight at once.")] = _R["concurrency"],
) -> None:
    """Run (or resume) the experiment."""
    from experiment.exceptions import ConfigMismatchError
    from experiment.runner import run_experiment

    try:
        training = TrainingConfig(
            rank=lora_rank, alpha=lora_alpha, learning_rate=learning_rate, epochs=epochs,
            batch_size=train_batch_size, max_seq_len=max_seq_len, dtype=train_dtype,
            max_steps=max_steps, min_steps=min_steps, max_epochs=max_epochs)
        config = ExperimentConfig(
            task=task, task_options=json.loads(task_options), train_size=train_size,
            test_size=test_size, train_seed=train_seed, test_seed=test_seed,
            iterations=iterations, methods=resolve_methods(methods, summarize), agents=agents,
            rounds=rounds, summarize=summarize, temperature=temperature, top_p=top_p,
            max_tokens=max_tokens, sampling_extra=json.loads(sampling_extra), w=w,
            min_consensus=min_consensus, labels=labels, feedback_share=feedback_share,
            majority=majority, critic_loss=critic_loss, seed=seed, training=training,
            diversity_questions=diversity_questions, nll=nll, embeddings=embeddings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    runtime = Runtime(
        out_dir=out.absolute(), model_path=_model(model_path), base_model_name=base_model_name,
        inference_url=inference_url, adapter_store=adapter_store,
        served_model_path=served_model_path, max_lora_rank=max_lora_rank, max_loras=max_loras,
        max_model_len=max_model_len, inference_dtype=inference_dtype,
        cpu_kvcache_gib=cpu_kvcache_gib, tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization, concurrency=concurrency)
    # SIGTERM -> SystemExit, so the `finally` blocks stop our inference server too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run_experiment(config, runtime, command=["python", "-m", "experiment", *sys.argv[1:]])
    except ConfigMismatchError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"results in {out}/results.md")


def _model(path: Path | None) -> Path:
    if path is not None:
        return path.expanduser().absolute()
    from maft.processes import materialize_default_model

    return materialize_default_model(
        Path("~/.cache/maft-tests/SmolLM2-135M-Instruct").expanduser())


@app.command()
def report(out: Annotated[Path, typer.Argument(help="An experiment's output folder.")]) -> None:
    """Rebuild results.json, results.md and the plots from state.json and the debates
    (collections/, or digest.jsonl.gz where that folder is absent)."""
    from experiment.report import write_report

    write_report(out)
    typer.echo((out / "results.md").read_text())


if __name__ == "__main__":
    app()
