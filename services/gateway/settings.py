"""Gateway settings (environment prefix MAFT_), read once per process."""

from __future__ import annotations

import logging
from functools import lru_cache

from pydantic import Field, SecretStr

from maft.settings import CommonSettings

log = logging.getLogger(__name__)


class GatewaySettings(CommonSettings):
    """Everything the gateway needs to know."""

    auth_disabled: bool = Field(
        default=False, description="Serve without API keys (development only; logs a warning).")
    inference_timeout_s: float = Field(default=300.0, description="Per model call.")
    debate_timeout_s: float = Field(default=900.0, description="Whole debate, all rounds.")
    default_task: str = "numeric"
    default_agents: int = 3
    default_rounds: int = 2
    default_temperature: float = 1.0
    default_top_p: float = 0.9
    default_max_tokens: int = 512
    gsm8k_path: str | None = Field(default=None, description="GSM8K JSONL (task gsm8k).")
    math_path: str | None = Field(default=None, description="MATH-format JSONL (task math).")
    broker_url: str = Field(default="redis://127.0.0.1:6379/0",
                            description="Celery broker of the trainer; `filesystem://` embedded.")
    readiness_timeout_s: float = 60.0
    console_secret: SecretStr | None = Field(
        default=None, description="Key that signs console session cookies; unset: generated "
        "once and kept in `home/console-secret` (set it when several gateways share traffic).")
    console_session_hours: float = Field(default=8.0, gt=0, le=24 * 30,
                                         description="Console sessions expire after this.")
    console_secure_cookie: bool = Field(
        default=False, description="Mark the console cookie Secure (serve over https).")
    # Admission control (per replica). Defaults from bench/load.py on a 2-core CPU with
    # SmolLM2-135M (3x2 debates, 32 tokens): 4 in flight gave 10 debates/min at a median of 24 s,
    # 8 only 13/min at 35 s (docs/deploy.md, "Limits").
    max_debates_in_flight: int = Field(
        default=4, ge=1, description="Debates running at once in this replica; more queue.")
    max_debates_queued: int = Field(
        default=8, ge=0, description="Debates waiting for a slot; beyond: immediate 503.")
    queue_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for a slot before a 503.")
    # Per API key, per minute (0 = no limit); in Redis when there is one, else in-process.
    rate_limit_per_minute: int = Field(default=600, ge=0, description="Requests per key.")
    debate_rate_limit_per_minute: int = Field(default=60, ge=0,
                                              description="Debates started per key.")
    rate_limit_redis_url: str | None = Field(
        default=None, description="Redis of the shared limits; default: the broker's, if it is "
        "Redis; in-process counters when the broker is `filesystem://`.")
    max_header_bytes: int = Field(default=16384, ge=1024,
                                  description="All request headers together; beyond: 431.")
    max_body_bytes: int = Field(default=1_048_576, ge=1024,
                                description="Request body; beyond: 413.")


@lru_cache
def get_settings() -> GatewaySettings:
    """The process-wide settings (tests build their own and pass them to create_app)."""
    return GatewaySettings()
