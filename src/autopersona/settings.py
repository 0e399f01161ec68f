"""Settings, from the environment (``AUTOPERSONA_*``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Where things live and how much they may use.

    ``memory_limit`` caps DuckDB (work beyond it spills to disk), so a warehouse on a shared
    machine does not take most of its memory.

    Examples
    --------
    >>> Settings(warehouse="x.duckdb").warehouse
    PosixPath('x.duckdb')
    """

    model_config = SettingsConfigDict(env_prefix="AUTOPERSONA_", env_file=".env", extra="ignore")

    warehouse: Path = Path("autopersona.duckdb")
    memory_limit: str | None = "3GB"
    threads: int | None = None


def get_settings() -> Settings:
    """Current settings."""
    return Settings()
