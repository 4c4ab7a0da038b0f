"""The root of every error IONFLUX raises on purpose.

::

    IonfluxError                      code, message, hint, retryable
     +-- FlowValidationError          a flow document is not valid FluxGraph (engine.dsl.issue)
     +-- ExpressionError              an expression failed to compile or evaluate (engine.dsl.expression)
     +-- UnknownNodeTypeError         a node type is not in the registry (engine.nodetypes.registry)

Every error carries a stable ``code`` (dotted, lower case, never reworded), a ``message`` that says what went
wrong and where, and a ``hint`` that says how to fix it. ``retryable`` is data on the error, so the engine can
decide without matching on classes or strings. ``api/`` maps these to HTTP once, at the edge.
"""

from __future__ import annotations


class IonfluxError(Exception):
    """Raised when IONFLUX refuses something on purpose; never raised directly, only through a subclass."""

    code: str = "ionflux.error"
    retryable: bool = False

    def __init__(self, message: str, *, hint: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, object]:
        """The ``{code, message, hint}`` shape the API and ``--json`` outputs share."""
        return {"code": self.code, "message": self.message, "hint": self.hint}
