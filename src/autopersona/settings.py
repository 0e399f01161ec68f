"""Settings, from the environment (``AUTOPERSONA_*``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_PSEUDONYM_KEY", "Settings", "get_settings"]

#: The published default key for pseudonyms: fine for demos, refused outside demo mode
#: (see :func:`autopersona.privacy.pseudo.check_settings`).
DEFAULT_PSEUDONYM_KEY = "autopersona-demo-pseudonym-key-do-not-use-in-production"


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
    #: Demo mode: the default pseudonym key is accepted (never in a real deployment).
    demo: bool = False
    #: Secret key of the keyed-HMAC pseudonyms (``AUTOPERSONA_PSEUDONYM_KEY``).
    pseudonym_key: SecretStr = SecretStr(DEFAULT_PSEUDONYM_KEY)
    #: Differential-privacy budget (total epsilon) of a dataset without its own budget.
    dp_budget: float = 4.0
    #: Pseudonymise VINs, phones and e-mails at ingest, on live events and in every store
    #: (on by default; ``AUTOPERSONA_PSEUDONYMISE=0`` opts out, e.g. for a scoring harness
    #: that joins the simulator's truth on clear VINs).
    pseudonymise: bool = True
    #: Re-identification vault: pseudonym -> clear value, kept apart from the warehouse.
    vault: Path = Path("autopersona-vault.duckdb")


def get_settings() -> Settings:
    """Current settings."""
    return Settings()
