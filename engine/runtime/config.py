"""What the runtime needs to know, as one frozen value (the api layer builds it from settings/environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.steps.llm import ModelRoute
from engine.steps.wasm import SandboxPolicy


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    database_url: str
    blob_dir: Path
    secret_key: bytes  # a Fernet key (32 url-safe base64-encoded bytes)
    redis_url: str | None = None
    queue_namespace: str = "ionflux"
    worker_threads: int = 4
    max_payload_bytes: int = 16 * 1024 * 1024  # largest step output or run input
    inline_payload_bytes: int = 64 * 1024  # larger payloads go to the blob store and are referenced
    preview_chars: int = 1000
    heartbeat_seconds: float = 1.0
    dead_after_seconds: float = 10.0  # a worker silent this long is presumed dead; its steps are re-queued
    requeue_after_seconds: float = 15.0  # a queued step nobody claimed this long gets its doorbell rung again
    tick_seconds: float = 0.2  # how often timers and the reconciler are looked at
    http_allow_networks: tuple[str, ...] = ()  # CIDRs http.request may reach though private (tests, intranets)
    http_timeout_seconds: float = 30.0
    slack_api_url: str = "https://slack.com/api"  # Slack's Web API (tests point it at a loopback server)
    smtp_url: str | None = None  # smtp://user:pw@host:587 (STARTTLS), smtps://…:465, smtp+plain://host:25
    smtp_sender: str = "ionflux@localhost"
    llm_models: Mapping[str, ModelRoute] | None = None  # model aliases; None: the built-in defaults
    llm_api_base: str | None = None  # an OpenAI-compatible server for routes that name none (llama.cpp, Ollama)
    llm_timeout_seconds: float = 120.0
    nats_url: str | None = None  # event.publish and event triggers over NATS; None: the in-process bus
    events_stream: str = "IONFLUX_EVENTS"  # the JetStream stream IONFLUX creates for event-trigger subjects
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)  # wasm.run/code.* limits: defaults and maxima
