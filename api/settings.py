"""Settings: the one place that reads the environment (``IONFLUX_*``) and turns it into runtime configuration.

Defaults give a working embedded install with nothing set: a SQLite file, a blob folder and a generated secret
key under ``IONFLUX_HOME`` (``~/.ionflux``). Set ``IONFLUX_DATABASE_URL`` (PostgreSQL) and ``IONFLUX_REDIS_URL``
to run workers on several machines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import IonfluxError

if TYPE_CHECKING:
    from engine.runtime.config import RuntimeConfig
    from engine.steps.llm import ModelRoute
    from engine.steps.wasm import SandboxPolicy


class SettingsError(IonfluxError):
    code = "settings.invalid"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".ionflux", description="data folder (embedded mode)")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in IONFLUX_HOME")
    redis_url: str | None = Field(None, description="Redis for the queue; default: in-process broker")
    queue_namespace: str = Field("ionflux", description="Redis key prefix (several installs can share one Redis)")
    blob_dir: Path | None = Field(None, description="content-addressed payload store; default IONFLUX_HOME/blobs")
    secret_key: str | None = Field(
        None, description="Fernet key for the secret store; default: IONFLUX_HOME/secret.key"
    )
    extensions: str = Field("", description="comma-separated modules that register node types and executors")
    worker_threads: int = Field(4, ge=1, le=256)
    max_payload_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    dead_after_seconds: float = Field(10.0, gt=0)
    requeue_after_seconds: float = Field(15.0, gt=0)
    heartbeat_seconds: float = Field(1.0, gt=0)
    http_allow_networks: str = Field("", description="comma-separated CIDRs http.request may reach though private")
    http_timeout_seconds: float = Field(30.0, gt=0)
    slack_api_url: str = Field("https://slack.com/api", description="Slack Web API base URL")
    smtp_url: str | None = Field(None, description="SMTP server for email.send: smtp://user:pw@host:587 (STARTTLS)")
    smtp_sender: str = Field("ionflux@localhost", description="From address when a node gives none")
    llm_models: dict[str, str | dict[str, Any]] = Field(
        default_factory=dict,
        description='model aliases as JSON, e.g. {"default": "openai/gpt-4o-mini", "smart": {"model": ...}}',
    )
    model: str | None = Field(
        None, description="the model alias Jules (the co-pilot) uses, e.g. default; unset: the offline planner"
    )
    llm_api_base: str | None = Field(None, description="OpenAI-compatible server (llama.cpp, Ollama) for all aliases")
    llm_timeout_seconds: float = Field(120.0, gt=0)
    copilot_rate_per_minute: float = Field(
        30.0, gt=0, description="co-pilot calls (messages, plan, estimate, optimise, advice) an owner may make a minute"
    )
    open_local: bool = Field(
        False,
        description="demo: requests from this machine without credentials act as the local owner (loopback bind only)",
    )
    bind: str = Field("127.0.0.1:8080", description="host:port the HTTP server listens on (port 0: any free one)")
    max_webhook_bytes: int = Field(1024 * 1024, ge=1024, description="largest webhook body accepted (413 beyond)")
    webhook_rate_per_minute: float = Field(
        600.0, gt=0, description="deliveries one webhook URL may make a minute (429 with Retry-After beyond)"
    )
    public_url: str = Field(
        "http://127.0.0.1:8080", description="the address users and webhook senders reach this server at"
    )
    events_stream: str = Field(
        "IONFLUX_EVENTS", description="JetStream stream created for event-trigger subjects no other stream captures"
    )
    nats_url: str | None = Field(None, description="NATS for event.publish and event triggers; default in-process")
    sandbox_fuel: int = Field(2_000_000_000, ge=1, description="default fuel (wasm instructions) per sandboxed step")
    sandbox_max_fuel: int = Field(50_000_000_000, ge=1)
    sandbox_memory_mb: int = Field(128, ge=1, le=4096)
    sandbox_max_memory_mb: int = Field(1024, ge=1, le=4096)
    sandbox_timeout_seconds: float = Field(10.0, gt=0)
    sandbox_max_timeout_seconds: float = Field(300.0, gt=0)
    sandbox_output_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    sandbox_log_bytes: int = Field(64 * 1024, ge=1024)

    @property
    def extension_modules(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.extensions.split(",") if m.strip())

    def key(self) -> bytes:
        """The secret-store key: the setting, or a key file created (mode 0600) on first use."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.home / "secret.key"
        if not path.exists():
            from engine.runtime.secrets import new_key

            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(new_key())
        return path.read_bytes().strip()

    def runtime_config(self) -> RuntimeConfig:
        from engine.runtime.config import RuntimeConfig
        from engine.store.db import sqlite_url

        if self.database_url is None:
            self.home.mkdir(parents=True, exist_ok=True)
        return RuntimeConfig(
            database_url=self.database_url or sqlite_url(self.home / "ionflux.db"),
            blob_dir=self.blob_dir or self.home / "blobs",
            secret_key=self.key(),
            redis_url=self.redis_url,
            queue_namespace=self.queue_namespace,
            worker_threads=self.worker_threads,
            max_payload_bytes=self.max_payload_bytes,
            dead_after_seconds=self.dead_after_seconds,
            requeue_after_seconds=self.requeue_after_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
            http_allow_networks=tuple(n.strip() for n in self.http_allow_networks.split(",") if n.strip()),
            http_timeout_seconds=self.http_timeout_seconds,
            slack_api_url=self.slack_api_url,
            smtp_url=self.smtp_url,
            smtp_sender=self.smtp_sender,
            llm_models=self.model_routes(),
            llm_api_base=self.llm_api_base,
            llm_timeout_seconds=self.llm_timeout_seconds,
            nats_url=self.nats_url,
            events_stream=self.events_stream,
            sandbox=self.sandbox_policy(),
        )

    def sandbox_policy(self) -> SandboxPolicy:
        from engine.steps.sandbox import Limits
        from engine.steps.wasm import SandboxPolicy

        defaults = Limits(
            self.sandbox_fuel,
            self.sandbox_timeout_seconds,
            self.sandbox_memory_mb,
            self.sandbox_output_bytes,
            self.sandbox_log_bytes,
        )
        maxima = Limits(
            max(self.sandbox_max_fuel, self.sandbox_fuel),
            max(self.sandbox_max_timeout_seconds, self.sandbox_timeout_seconds),
            max(self.sandbox_max_memory_mb, self.sandbox_memory_mb),
            self.sandbox_output_bytes,
            self.sandbox_log_bytes,
        )
        return SandboxPolicy(defaults, maxima)

    def model_routes(self) -> dict[str, ModelRoute]:
        """The built-in aliases overlaid with IONFLUX_LLM_MODELS (an alias may also be a new name)."""
        from engine.steps.llm import DEFAULT_MODELS, ModelRoute

        routes = dict(DEFAULT_MODELS)
        for alias, value in self.llm_models.items():
            try:
                routes[alias] = ModelRoute.parse(value)
            except (TypeError, ValueError) as e:
                raise SettingsError(
                    f"IONFLUX_LLM_MODELS[{alias!r}]: {e}",
                    hint='e.g. IONFLUX_LLM_MODELS=\'{"default": {"model": "openai/smollm2", "api_base": '
                    '"http://127.0.0.1:8088/v1"}}\'',
                ) from None
        return routes
