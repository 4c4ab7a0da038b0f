"""Extensions: modules that add node types and their executors, loaded by name (``IONFLUX_EXTENSIONS``).

An extension module defines ``register(types: Registry, executors: ExecutorRegistry) -> None`` and registers
through the same APIs the built-ins use. Every process (``ionflux up``, ``worker``, ``run``) must load the same
extensions, since validation and execution both need them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from engine.errors import IonfluxError
from engine.nodetypes.builtin import register_builtins
from engine.nodetypes.registry import Registry
from engine.steps.registry import ExecutorRegistry, Integrations, builtin_executors


class ExtensionError(IonfluxError):
    code = "extension.invalid"


def load(modules: Iterable[str], integrations: Integrations | None = None) -> tuple[Registry, ExecutorRegistry]:
    """The node-type registry (frozen) and executor registry with the built-ins plus each named extension;
    ``integrations``: the operator's settings for the built-ins (default: public addresses only, nothing set up)."""
    types = register_builtins(Registry())
    executors = builtin_executors(integrations)
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ExtensionError(
                f"extension {module_name!r} cannot be imported: {e}",
                hint="check IONFLUX_EXTENSIONS (comma-separated module names on the Python path)",
            ) from None
        register = getattr(module, "register", None)
        if not callable(register):
            raise ExtensionError(
                f"extension {module_name!r} has no register(types, executors) function",
                hint="define it; it registers node types and executors the way engine.steps.data does",
            )
        register(types, executors)
    return types.freeze(), executors
