"""Executors by node type name; built-ins register here exactly as extensions do."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from engine.errors import IonfluxError
from engine.steps.call import Executor


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


@cache
def builtin_executors() -> ExecutorRegistry:
    from engine.steps import chat, data, email, http

    registry = ExecutorRegistry()
    data.register(registry)
    registry.register("http.request", http.executor(http.HttpPolicy()))  # public addresses only
    for name, executor in chat.executors(http.HttpPolicy()).items():
        registry.register(name, executor)
    registry.register("email.send", email.executor(email.SmtpSettings()))  # fails clearly until configured
    return registry
