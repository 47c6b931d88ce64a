"""Alembic migrations on the real Postgres: they match the ORM tables and downgrade cleanly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from maft.db import migrate
from maft.db.models import Base
from maft.db.session import make_engine
from tests.fixtures.db import PG_URL

SCHEMA = "migration_check"


def test_migrations_match_models_and_round_trip() -> None:
    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"))
    url = f"{PG_URL}?options=-csearch_path%3D{SCHEMA}"
    try:
        migrate.upgrade(url)
        config = migrate.alembic_config(url)
        command.downgrade(config, "base")
        migrate.upgrade(url)
        scoped = make_engine(url)
        with scoped.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        scoped.dispose()
        assert diff == [] and version == migrate.current_head()
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        engine.dispose()
