"""Executors by node type name; built-ins register here exactly as extensions do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from engine.errors import IonfluxError
from engine.steps.bus import Bus, LocalBus
from engine.steps.call import Executor
from engine.steps.chat import SLACK_API
from engine.steps.email import SmtpSettings
from engine.steps.http import HttpPolicy
from engine.steps.llm import LlmSettings
from engine.steps.sandbox import Sandbox
from engine.steps.wasm import Resolver, SandboxPolicy


class MissingExecutorError(IonfluxError):
    """Raised when a flow uses a node type that has no executor in this installation yet."""

    code = "step.no_executor"


class ExecutorRegistry:
    def __init__(self) -> None:
        self._executors: dict[str, Executor] = {}

    def register(self, node_type: str, executor: Executor) -> Executor:
        self._executors[node_type] = executor
        return executor

    def get(self, node_type: str) -> Executor:
        try:
            return self._executors[node_type]
        except KeyError:
            raise MissingExecutorError(
                f"node type {node_type!r} cannot run here yet: no executor is installed for it",
                hint="the types that run today are: " + ", ".join(sorted(self._executors)),
            ) from None

    def __contains__(self, node_type: object) -> bool:
        return node_type in self._executors

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._executors))


@dataclass(frozen=True)
class Integrations:
    """The operator's settings for the built-ins that reach the outside world (defaults: safe, unconfigured)."""

    http: HttpPolicy = field(default_factory=HttpPolicy)  # public addresses only
    slack_api_url: str = SLACK_API
    smtp: SmtpSettings = field(default_factory=SmtpSettings)  # email.send fails clearly until configured
    llm: LlmSettings = field(default_factory=LlmSettings)
    bus: Bus = field(default_factory=LocalBus)
    # the sandbox, where registered transforms come from, and the limits (None: wasm.run is not available)
    wasm: tuple[Sandbox, Resolver, SandboxPolicy] | None = None


def builtin_executors(integrations: Integrations | None = None) -> ExecutorRegistry:
    from engine.steps import chat, code_js, code_python, data, email, events, http, llm, wasm

    settings = integrations or Integrations()
    registry = ExecutorRegistry()
    data.register(registry)
    registry.register("http.request", http.executor(settings.http))
    for name, executor in chat.executors(settings.http, settings.slack_api_url).items():
        registry.register(name, executor)
    registry.register("email.send", email.executor(settings.smtp))
    for name, executor in llm.executors(settings.llm).items():
        registry.register(name, executor)
    registry.register("event.publish", events.executor(settings.bus))
    registry.register("code.js", code_js.executor(settings.wasm[2] if settings.wasm else SandboxPolicy()))
    if settings.wasm is not None:
        sandbox, resolve, policy = settings.wasm
        registry.register("wasm.run", wasm.executor(sandbox, resolve, policy))
        registry.register("code.python", code_python.executor(sandbox, policy))
    return registry
