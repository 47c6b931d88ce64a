"""`python -m services.trainer.experiment run ... | report <dir>`."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from services.trainer.experiment.config import (
    DEFAULT_TASK_OPTIONS,
    ExperimentConfig,
    Runtime,
    TrainingConfig,
    resolve_methods,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproduce the MAFT paper's comparison on this stack (method.md).")
Opt = typer.Option


@app.command()
def run(
    out: Annotated[Path, Opt(help="Output folder; rerun the same command to resume.")],
    model_path: Annotated[Path | None, Opt(help="Base model folder (HF format); default: "
                                           "SmolLM2-135M-Instruct, materialised once.")] = None,
    task: Annotated[str, Opt(help="arithmetic | gsm8k | ...")] = "arithmetic",
    task_options: Annotated[str, Opt(help="JSON, e.g. '{\"path\": \"train.jsonl\"}' for "
                                     "gsm8k")] = json.dumps(DEFAULT_TASK_OPTIONS),
    train_size: int = 100, test_size: int = 100, train_seed: int = 1, test_seed: int = 2,
    iterations: int = 2,
    methods: Annotated[str, Opt(help="Comma list or 'all': base, majority, debate, "
                                "majority_ft, star, single_ft, maft, maft_wo_critic, "
                                "maft_wo_summary.")] = "base,majority,debate,single_ft,maft",
    agents: int = 3, rounds: int = 2,
    summarize: Annotated[bool, Opt(help="Main debate summarises others' answers (paper); "
                                   "default: concatenation (the product's default).")] = False,
    temperature: float = 0.7, top_p: float = 0.9, max_tokens: int = 256,
    sampling_extra: Annotated[str, Opt(help="JSON of extra vLLM sampling fields.")] = "{}",
    w: float = 2 / 3, min_consensus: float = 0.0, seed: int = 0,
    lora_rank: int = 8, lora_alpha: int = 16, learning_rate: float = 2e-4, epochs: int = 1,
    train_batch_size: int = 4, max_seq_len: int = 1024, train_dtype: str = "auto",
    max_steps: int | None = None,
    diversity_questions: Annotated[int, Opt(help="Test questions for cross-agent NLL.")] = 30,
    nll: bool = True, embeddings: bool = True,
    inference_url: Annotated[str | None, Opt(help="Use this running server (default: launch "
                                             "our own).")] = None,
    adapter_store: Annotated[Path | None, Opt(help="That server's adapter store.")] = None,
    served_model_path: Annotated[str | None, Opt(help="That server's --model string.")] = None,
    base_model_name: str = "SmolLM2-135M-Instruct",
    max_lora_rank: int = 16, max_loras: int = 8, max_model_len: int = 4096,
    inference_dtype: str = "auto", cpu_kvcache_gib: int = 2,
    tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
    concurrency: Annotated[int, Opt(help="Debates in flight at once.")] = 32,
) -> None:
    """Run (or resume) the experiment."""
    from services.trainer.experiment.runner import run_experiment
    from services.trainer.experiment.state import ConfigMismatchError

    training = TrainingConfig(rank=lora_rank, alpha=lora_alpha, learning_rate=learning_rate,
                              epochs=epochs, batch_size=train_batch_size,
                              max_seq_len=max_seq_len, dtype=train_dtype, max_steps=max_steps)
    try:
        config = ExperimentConfig(
            task=task, task_options=json.loads(task_options), train_size=train_size,
            test_size=test_size, train_seed=train_seed, test_seed=test_seed,
            iterations=iterations, methods=resolve_methods(methods, summarize), agents=agents,
            rounds=rounds, summarize=summarize, temperature=temperature, top_p=top_p,
            max_tokens=max_tokens, sampling_extra=json.loads(sampling_extra), w=w,
            min_consensus=min_consensus, seed=seed, training=training,
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
        run_experiment(config, runtime, command=["python", "-m", "services.trainer.experiment",
                                                 *sys.argv[1:]])
    except ConfigMismatchError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"results in {out}/results.md")


def _model(path: Path | None) -> Path:
    if path is not None:
        return path.expanduser().absolute()
    from services.inference.model import materialize_smollm2

    return materialize_smollm2(Path("~/.cache/maft-tests/SmolLM2-135M-Instruct").expanduser())


@app.command()
def report(out: Annotated[Path, typer.Argument(help="An experiment's output folder.")]) -> None:
    """Rebuild results.json, results.md and the plots from state.json."""
    from services.trainer.experiment.report import write_report

    write_report(out)
    typer.echo((out / "results.md").read_text())


if __name__ == "__main__":
    app()
