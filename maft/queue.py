"""The contract between the gateway (producer) and the trainer (Celery worker).

Task names and the queue are plain strings, so the gateway enqueues without importing the
trainer. `celery_config` is a plain dict, so this module needs no Celery import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRAINING_QUEUE = "training"
TASK_START_RUN = "maft.training.curate"
TASK_TRAIN_AGENT = "maft.training.train_agent"
TASK_EVALUATE = "maft.training.evaluate"
TASK_PUBLISH = "maft.training.publish"
TASK_AUTO_RETRAIN = "maft.training.auto_retrain"
TASK_REAP = "maft.training.reap_stale_runs"


def filesystem_broker_options(home: Path) -> dict[str, Any]:
    """kombu's filesystem transport under `home/broker`: the embedded default, no Redis needed."""
    folder = home / "broker"
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    # control_folder defaults to ./control in the current directory: keep it under home too.
    return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"), "store_processed": False,
            "control_folder": str(folder / "control")}


def celery_config(broker_url: str, home: Path, *, publish_timeout_s: float = 5.0
                  ) -> dict[str, Any]:
    """Celery settings shared by producer and worker.

    Results are not stored (progress lives in the database), tasks are acknowledged late and
    re-queued if their worker dies, and publishing fails fast instead of hanging on a dead broker.
    """
    config: dict[str, Any] = {
        "broker_url": broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": TRAINING_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_timeout": publish_timeout_s,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": False,
    }
    if broker_url.startswith("filesystem"):
        config["broker_transport_options"] = filesystem_broker_options(home)
    else:
        config["broker_transport_options"] = {"socket_connect_timeout": publish_timeout_s,
                                              "socket_timeout": publish_timeout_s}
    return config
