"""CLI settings (environment prefix MAFT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from maft.settings import CommonSettings


class CliSettings(CommonSettings):
    """Where the gateway is and which key to use."""

    gateway_url: str = "http://127.0.0.1:8000"
    api_key: str | None = Field(default=None, description="Else read from `home/api-key`.")

    @property
    def key_file(self) -> Path:
        """Where `maft up` keeps the embedded default's admin key."""
        return self.home / "api-key"

    def resolved_key(self) -> str | None:
        """The API key to send: MAFT_API_KEY, else the key file, else None."""
        if self.api_key:
            return self.api_key
        return self.key_file.read_text().strip() if self.key_file.is_file() else None
