"""`maft db ...` and `maft keys ...`: database migrations and API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from maft.cli.settings import CliSettings
from maft.db import crud, migrate
from maft.db.session import make_engine, make_session_factory
from maft.exceptions import NotFoundError

console = Console()
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; the key is shown once).",
                       no_args_is_help=True)


def upgrade_database(settings: CliSettings) -> None:
    """Migrate to the newest schema and record society v0 if missing."""
    migrate.upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with make_session_factory(engine)() as db, db.begin():
        crud.ensure_base_society(db, base_model_name=settings.base_model_name)
    engine.dispose()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (Alembic) and record the base society v0."""
    settings = CliSettings()
    upgrade_database(settings)
    console.print(f"database at head ({migrate.current_head()}): {settings.db_url}")


def _sessions(settings: CliSettings):
    return make_session_factory(make_engine(settings.db_url))


def create_key(settings: CliSettings, name: str, scopes: list[str]) -> str:
    """Create a key and return its plaintext."""
    with _sessions(settings)() as db, db.begin():
        _, plaintext = crud.create_api_key(db, name=name, scopes=scopes)
    return plaintext


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[list[str], typer.Option(
        help="query, label (trusted labeller) and/or admin (repeat).")] = ["query"],  # noqa: B006
) -> None:
    """Create an API key and print it (only now: it is stored hashed)."""
    try:
        plaintext = create_key(CliSettings(), name, scope)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    console.print(plaintext, soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    with _sessions(CliSettings())() as db:
        for key in crud.list_api_keys(db):
            table.add_row(str(key.id), key.name, key.prefix, ",".join(key.scopes),
                          f"{key.created_at:%Y-%m-%d %H:%M}",
                          f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix.")]) -> None:
    """Revoke a key; requests with it get 401 from now on."""
    try:
        with _sessions(CliSettings())() as db, db.begin():
            row = crud.revoke_api_key(db, key=key)
    except NotFoundError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked {row.name} ({row.prefix})")
