"""Settings shared by every service (environment prefix MAFT_). Each service subclasses this."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The ranks vLLM 0.32 accepts for --max-lora-rank (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_MODEL_DIRNAME = DEFAULT_BASE_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_MAX_LORA_RANK = 16


class CommonSettings(BaseSettings):
    """Where state lives and how to reach the inference server."""

    model_config = SettingsConfigDict(env_prefix="MAFT_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path.home() / ".maft",
                       description="State of the embedded default: SQLite, models, adapters.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; a SQLite file under `home` when unset.")
    inference_url: str = "http://127.0.0.1:8001"
    base_model_name: str = Field(default=DEFAULT_BASE_MODEL_NAME,
                                 description="Name vLLM serves the base model under.")
    inference_api_key: SecretStr | None = Field(
        default=None, description="Bearer key vLLM requires on /v1 (its VLLM_API_KEY); set it "
        "wherever anything but the gateway and the trainer can reach inference.")
    adapter_store: Path | None = Field(
        default=None, description="Folder of adapter versions (one folder per lora_name).")
    model_path: Path | None = Field(
        default=None, description=f"HF model folder; default `home/models/"
        f"{DEFAULT_MODEL_DIRNAME}` (materialised by `maft up`).")
    max_lora_rank: int = Field(
        default=DEFAULT_MAX_LORA_RANK, description="The inference server's --max-lora-rank; "
        "the trainer refuses to publish adapters above it.")

    @field_validator("max_lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, value: int) -> int:
        if value not in VLLM_LORA_RANKS:
            raise ValueError(f"max_lora_rank must be one of {VLLM_LORA_RANKS}")
        return value

    @property
    def model_dir(self) -> Path:
        """The base model folder, defaulting to the materialised SmolLM2 under `home`."""
        return self.model_path or self.home / "models" / DEFAULT_MODEL_DIRNAME

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to a SQLite file under `home`."""
        return self.database_url or f"sqlite:///{self.home / 'maft.db'}"

    @property
    def inference_key(self) -> str | None:
        """The inference API key in clear, for the clients that send it."""
        return self.inference_api_key.get_secret_value() if self.inference_api_key else None

    @property
    def adapter_dir(self) -> Path:
        """The adapter store folder, defaulting to `home/adapters`."""
        return self.adapter_store or self.home / "adapters"
