"""What every pipeline step needs, built once per worker process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from maft.adapter_store import AdapterStore
from maft.db.session import make_engine, make_session_factory
from services.trainer.settings import TrainerSettings

T = TypeVar("T")
Next = tuple[str, tuple[Any, ...]]  # a Celery task name and its arguments, to enqueue


@dataclass
class TrainerContext:
    """Settings, the database and the adapter store."""

    settings: TrainerSettings
    sessions: sessionmaker[Session]
    store: AdapterStore

    @classmethod
    def from_settings(cls, settings: TrainerSettings) -> TrainerContext:
        """Open the engine and the store for `settings`."""
        settings.adapter_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings, make_session_factory(make_engine(settings.db_url)),
                   AdapterStore(settings.adapter_dir))

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A session in a transaction that commits on success."""
        with self.sessions() as db, db.begin():
            yield db

    def call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        """`fn(session, **kwargs)` in its own transaction."""
        with self.tx() as db:
            return fn(db, **kwargs)
