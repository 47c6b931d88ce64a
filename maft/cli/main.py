"""The `maft` command."""

from __future__ import annotations

import typer

from maft.cli.admin import db_app, keys_app
from maft.cli.ask import ask
from maft.cli.experiment import experiment_app
from maft.cli.train import adapters_app, train_app
from maft.cli.up import up

app = typer.Typer(help="MAFT: answers from a debate among self-improving agents.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command()(up)
app.command()(ask)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(train_app, name="train")
app.add_typer(adapters_app, name="adapters")
app.add_typer(experiment_app, name="experiment")

if __name__ == "__main__":
    app()
