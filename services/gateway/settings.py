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


@lru_cache
def get_settings() -> GatewaySettings:
    """The process-wide settings (tests build their own and pass them to create_app)."""
    return GatewaySettings()
