"""One typed Settings class: the only reader of the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - the value we refuse in production


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line a user can act on."""


class Settings(BaseSettings):
    """Everything the app, the CLI and the workers read from the environment."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    rlhf_env: Literal["development", "production", "test"] = Field(
        default="production", description="development and test allow the default secret"
    )
    data_dir: Path = Field(default=Path("data"), description="models, export batches, the SQLite file")
    database_url: str = Field(default="", description="empty: a SQLite file in DATA_DIR")
    redis_url: str = Field(default="", description="empty: a Celery broker that needs no server")
    secret_key: str = DEFAULT_SECRET
    base_url: str = "http://127.0.0.1:8000"
    # Session cookies are Secure in production unless COOKIE_SECURE=false (plain-http trials);
    # in development and test they follow BASE_URL's scheme.
    cookie_secure: bool | None = None
    api_token_days: int = Field(default=90, ge=1, description="API tokens expire after this many days")

    session_max_age_s: int = 12 * 3600
    lease_seconds: int = 15 * 60
    # Sign-in throttling: login_max_failures per (username, client) and 4x that per client refuse
    # further attempts for login_window_s; past login_user_max_failures on one username from all
    # clients, every attempt on it waits login_slow_delay_s, and a correct password still signs in.
    login_max_failures: int = 5
    login_window_s: int = 15 * 60
    login_user_max_failures: int = 20
    login_slow_delay_s: float = 3.0
    # Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks).
    trusted_proxies: str = Field(default="", description="e.g. 10.0.0.0/8,127.0.0.1")
    max_text_chars: int = 20_000
    max_upload_bytes: int = 64 * 1024 * 1024
    # Every other request body (forms, /login) is refused past this, before it is parsed.
    max_form_bytes: int = 1024 * 1024
    # Prompt data rules (instructgpt.md, prompt data) and quality control (issue 4).
    prompt_dedup_prefix_chars: int = Field(default=200, ge=8, description="shared prefix marking duplicates")
    prompt_max_per_user: int = Field(default=200, ge=1, description="prompts kept per external user id")
    split_valid_fraction: float = Field(default=0.1, ge=0, le=1)
    split_test_fraction: float = Field(default=0.1, ge=0, le=1)
    gold_min_accuracy: float = Field(default=0.7, ge=0, le=1, description="labelers below it can be paused")
    gold_min_items: int = Field(default=3, ge=1, description="gold items seen before accuracy counts")
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # Behind PgBouncer in transaction mode a connection may change server between transactions,
    # so psycopg must not keep server-side prepared statements (prepare_threshold=None).
    # The labeler's Core hot path (app.labeling.hotpath); false: the same one-hop routes run the
    # ORM services only (for before/after comparisons and as a fallback).
    web_hot_path: bool = True
    # Threads per web process for sync work (anyio's default limiter: 40). Fewer threads than
    # concurrent requests queue the surplus on the event loop instead of in the GIL and row locks.
    web_threads: int = Field(default=40, ge=1, le=1000)
    db_pgbouncer: bool = Field(
        default=False, description="DATABASE_URL points at PgBouncer (transaction mode)"
    )
    sqlite_busy_timeout_ms: int = 15_000
    # Training rounds: a running round stamps a heartbeat; one silent for run_stale_after_s is failed
    # by the reaper, which beat runs every reap_every_s (so a dead worker shows within their sum).
    run_heartbeat_s: float = 10.0
    run_stale_after_s: int = 60
    reap_every_s: float = 30.0
    restock_every_s: float = 60.0
    # Each training stage of a round runs in this many processes (one per GPU of the worker): 1 runs it
    # inside the worker; more launch torchrun, or `accelerate launch` with the config file (DeepSpeed, FSDP).
    training_processes: int = Field(default=1, ge=1, le=64, description="processes per training stage")
    training_accelerate_config: str = Field(
        default="", description="accelerate config file for several processes"
    )
    # Beat relays outbox messages the broker has not accepted yet (workers also do at start).
    outbox_relay_every_s: float = 15.0

    @field_validator("database_url")
    @classmethod
    def _database_url_parses(cls, value: str) -> str:
        if not value:
            return value
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"DATABASE_URL is not a database URL: {value!r}") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"DATABASE_URL must be sqlite:// or postgresql://, not {url.get_backend_name()!r}"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError(f"REDIS_URL must start with redis:// or rediss://, not {value!r}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        import ipaddress

        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"TRUSTED_PROXIES: {part!r} is not an address or network") from None
        return value

    @model_validator(mode="after")
    def _secret_is_set_in_production(self) -> Settings:
        if self.rlhf_env == "production" and (self.secret_key == DEFAULT_SECRET or len(self.secret_key) < 32):
            raise ValueError(
                "SECRET_KEY must be set to a random string of at least 32 characters in production "
                "(or set RLHF_ENV=development)"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to a SQLite file under DATA_DIR; psycopg 3 for PostgreSQL."""
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'rlhf.sqlite3').resolve()}"
        url = make_url(self.database_url)
        if url.drivername in {"postgresql", "postgres"}:
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded default."""
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def models_dir(self) -> Path:
        """Immutable model version directories."""
        return self.data_dir / "models"

    @property
    def exports_dir(self) -> Path:
        """Immutable export batch directories."""
        return self.data_dir / "exports"

    @property
    def https(self) -> bool:
        """True when BASE_URL says the app is served over HTTPS (HSTS is sent then)."""
        return self.base_url.startswith("https://")

    @property
    def secure_cookies(self) -> bool:
        """Mark cookies Secure: always in production unless COOKIE_SECURE=false, else per BASE_URL."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.rlhf_env == "production" or self.https


def load_settings() -> Settings:
    """Read the environment, turning validation failures into one-line ConfigErrors."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        name = field.upper()
        raise ConfigError(msg if field == "settings" or msg.startswith(name) else f"{name}: {msg}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache after changing the environment)."""
    return load_settings()
