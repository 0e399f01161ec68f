"""Settings of the service: the project's one settings class, extended with the API's fields.

Every field comes from the environment (``AUTOPERSONA_*``) or ``.env``, like the rest of
:class:`autopersona.settings.Settings`.  The key-hashing secret has a published default that
is accepted only in demo mode (``AUTOPERSONA_DEMO=1``); :meth:`ApiSettings.checked` refuses it
otherwise, so a real deployment cannot run with a secret everybody knows.

Examples
--------
>>> s = ApiSettings(demo=True)
>>> s.checked().api_rate > 0
True
>>> ApiSettings(demo=False, api_secret=DEFAULT_API_SECRET).checked()
Traceback (most recent call last):
...
autopersona.api.config.ConfigError: AUTOPERSONA_API_SECRET is the published default ...
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from autopersona.settings import Settings

__all__ = ["DEFAULT_API_SECRET", "ApiSettings", "ConfigError"]

#: Published default secret for hashing API keys: demo mode only.
DEFAULT_API_SECRET = "autopersona-demo-api-secret-do-not-use-in-production"


class ConfigError(ValueError):
    """Settings that must not be used to serve (e.g. the default secret outside demo mode)."""


class ApiSettings(Settings):
    """Settings of ``autopersona serve`` and ``autopersona keys`` (env prefix ``AUTOPERSONA_``)."""

    #: Demo mode: the default secret is accepted and the dashboard is readable without a key.
    demo: bool = False
    #: Profile store: ``postgresql://…`` or a DuckDB file; default: the warehouse itself.
    store: str | None = None
    #: Secret mixed into every API-key hash (HMAC-SHA256 key); changing it voids all keys.
    api_secret: SecretStr = SecretStr(DEFAULT_API_SECRET)
    #: File holding the API keys (hashed), next to the warehouse by default.
    api_keys_file: Path | None = None
    #: Default rate limit of a key: requests per second (token refill) and burst size.
    api_rate: float = Field(default=50.0, gt=0)
    api_burst: int = Field(default=100, ge=1)
    #: Largest request body accepted, in bytes (larger: 413).
    api_max_body: int = Field(default=2_000_000, ge=1024)
    #: Most rows accepted in one batch of events.
    api_max_rows: int = Field(default=10_000, ge=1)
    #: Open the warehouse read-only (several server processes; event ingestion then 503s).
    api_read_only: bool = False
    #: Connections in the PostgreSQL pool of each server process.
    api_pool_size: int = Field(default=8, ge=1, le=200)
    #: Current profiles kept in memory per server process (PostgreSQL store; 0: none); a
    #: profile of a dozen tags is about 5 kB.
    api_profile_cache: int = Field(default=20_000, ge=0)

    def keys_path(self) -> Path:
        """Where the API keys live: ``api_keys_file`` or ``<warehouse>.keys.json``."""
        if self.api_keys_file is not None:
            return self.api_keys_file
        return self.warehouse.with_name(self.warehouse.name + ".keys.json")

    def checked(self) -> ApiSettings:
        """Return ``self`` if it may be used to serve, else raise :class:`ConfigError`."""
        if not self.demo and self.api_secret.get_secret_value() == DEFAULT_API_SECRET:
            raise ConfigError(
                "AUTOPERSONA_API_SECRET is the published default; set a secret of your own "
                "(or AUTOPERSONA_DEMO=1 for a demo)"
            )
        if len(self.api_secret.get_secret_value()) < 16:
            raise ConfigError("AUTOPERSONA_API_SECRET must be at least 16 characters")
        from autopersona.privacy.pseudo import InsecureKeyError, check_settings

        try:  # the service pseudonymises what it ingests: no published or short key either
            check_settings(self)
        except InsecureKeyError as exc:
            raise ConfigError(str(exc)) from exc
        return self
