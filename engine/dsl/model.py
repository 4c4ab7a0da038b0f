"""The FluxGraph v1 document as frozen, typed values (pydantic), one class per construct of FLUXGRAPH.md.

Structure only: these models check shapes, types and ranges. Everything that needs the whole document (ids,
``needs`` targets, cycles, references, node-type schemas, permissions) is checked in ``engine.dsl.validator``,
which also turns pydantic's errors into located :class:`~engine.dsl.issue.Issue` values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)

from engine.dsl.duration import Duration
from engine.dsl.frozen import FrozenDict, freeze

FLOW_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TYPE_PATTERN = r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?$"
PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
HOST_PATTERN = (
    r"^(?:\*|(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])"
    r"(?::" + PORT + r")?$"
)

FlowId = Annotated[str, StringConstraints(pattern=FLOW_ID_PATTERN)]
NodeId = Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]
SecretName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
HostPattern = Annotated[str, StringConstraints(pattern=HOST_PATTERN)]
Condition = str | bool
# data written by the flow author: deeply frozen, so a validated version can never change under its id
Data = Annotated[dict[str, Any], AfterValidator(freeze)]


class Model(BaseModel):
    """Base of every FluxGraph value: frozen, strict (no silent "5" -> 5), unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


# --- nodes -------------------------------------------------------------------------------------------------


class Retry(Model):
    """How a failed attempt is retried: ``max_attempts`` counts the first try."""

    max_attempts: int = Field(3, ge=1, le=100)
    backoff: Literal["constant", "exponential"] = "exponential"
    initial_delay: Duration = Duration(1000)
    max_delay: Duration | None = None
    factor: float = Field(2.0, ge=1.0, le=10.0)
    jitter: bool = True

    @model_validator(mode="after")
    def _delays_ordered(self) -> Retry:
        if self.max_delay is not None and self.max_delay < self.initial_delay:
            raise ValueError(f"max_delay ({self.max_delay}) cannot be less than initial_delay ({self.initial_delay})")
        return self


class Permissions(Model):
    """The node's capability manifest: what it may reach and the limits it runs under."""

    net: tuple[HostPattern, ...] = Field((), strict=False)
    secrets: tuple[SecretName, ...] | None = Field(None, strict=False)
    memory_mb: int | None = Field(None, ge=1, le=4096)
    fuel: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cion: float | None = Field(None, gt=0)


class BaseNode(Model):
    id: NodeId
    type: Annotated[str, StringConstraints(pattern=TYPE_PATTERN)]
    name: str | None = None
    description: str | None = None
    needs: tuple[NodeId, ...] = Field((), strict=False)
    if_: Condition | None = Field(None, alias="if")
    retry: Retry | None = None
    timeout: Duration | None = None
    on_error: Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)] = "fail"
    permissions: Permissions | None = None

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: Duration | None) -> Duration | None:
        if value is not None and value.milliseconds == 0:
            raise ValueError("timeout must be longer than 0s")
        return value


class StepNode(BaseNode):
    """A node of any registered type except the control types below."""

    with_: Data = Field(default_factory=FrozenDict, alias="with")


class ForeachNode(BaseNode):
    """``type: foreach``: run ``do`` once per item of ``items``; the output is the list of per-item outputs."""

    type: Literal["foreach"]
    items: str | Annotated[list[Any], AfterValidator(freeze)]
    concurrency: int = Field(1, ge=1, le=100)
    do: tuple[Node, ...] = Field(min_length=1, strict=False)


class ApprovalNode(BaseNode):
    """``type: approval``: pause until approved or rejected; ``timeout`` then ``on_timeout`` decides."""

    type: Literal["approval"]
    with_: Data = Field(default_factory=FrozenDict, alias="with")
    on_timeout: Literal["reject", "approve"] = "reject"


def _node_kind(value: Any) -> str | None:
    if isinstance(value, BaseNode):
        value = {"type": value.type}
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    return kind if kind in ("foreach", "approval") else "step"


Node = Annotated[
    Annotated[StepNode, Tag("step")]
    | Annotated[ForeachNode, Tag("foreach")]
    | Annotated[ApprovalNode, Tag("approval")],
    Discriminator(_node_kind, custom_error_type="node_shape", custom_error_message="a node must be a mapping"),
]


# --- triggers ----------------------------------------------------------------------------------------------


class ManualTrigger(Model):
    """Started from the UI button, the API or the CLI; the input is validated against ``inputs``."""

    type: Literal["manual"]
    enabled: bool = True


class Signature(Model):
    """How a webhook delivery is signed. ``hmac``: an HMAC of the raw body in ``header`` (GitHub, Shopify and most
    senders); ``stripe``: Stripe's ``t=<time>,v1=<HMAC-SHA256 of "time.body">`` in ``Stripe-Signature``, refused
    when its time is more than ``tolerance`` seconds away (a replayed delivery)."""

    style: Literal["hmac", "stripe"] = "hmac"
    header: str | None = None  # default: X-Signature-256 (hmac), Stripe-Signature (stripe)
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    tolerance: int = Field(300, ge=1, le=86_400)

    @property
    def header_name(self) -> str:
        return self.header or ("Stripe-Signature" if self.style == "stripe" else "X-Signature-256")


class WebhookTrigger(Model):
    """A unique URL per flow; ``secret`` names a declared secret used to verify the HMAC signature."""

    type: Literal["webhook"]
    enabled: bool = True
    secret: SecretName | None = None
    signature: Signature | None = None
    dedupe_header: str | None = None


class CronTrigger(Model):
    """Fires on a cron schedule in an IANA time zone, once across all schedulers."""

    type: Literal["cron"]
    enabled: bool = True
    cron: str
    timezone: str = "UTC"
    misfire: Literal["skip", "run_once"] = "skip"
    input: Data | None = None


class EventTrigger(Model):
    """Fires for each event on a NATS subject (``*`` one token, ``>`` the rest)."""

    type: Literal["event"]
    enabled: bool = True
    subject: str


class FlowTrigger(Model):
    """Lets other flows call this one with ``flow.call``."""

    type: Literal["flow"]
    enabled: bool = True


Trigger = Annotated[
    ManualTrigger | WebhookTrigger | CronTrigger | EventTrigger | FlowTrigger,
    Field(discriminator="type"),
]


# --- the flow ----------------------------------------------------------------------------------------------


class Budget(Model):
    """Spending caps in C-ION: a run stops before a step would exceed ``max_cion_per_run``."""

    max_cion_per_run: float | None = Field(None, gt=0)
    max_cion_per_month: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_cap(self) -> Budget:
        if self.max_cion_per_run is None and self.max_cion_per_month is None:
            raise ValueError("a budget needs max_cion_per_run or max_cion_per_month")
        return self


class Flow(Model):
    """A FluxGraph v1 document."""

    fluxgraph: Literal[1]
    id: FlowId
    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = Field((), strict=False)
    inputs: Data | None = None
    triggers: tuple[Trigger, ...] = Field((), strict=False)
    secrets: tuple[SecretName, ...] = Field((), strict=False)
    budget: Budget | None = None
    nodes: tuple[Node, ...] = Field(min_length=1, strict=False)
    outputs: Data = Field(default_factory=FrozenDict)
    on_failure: tuple[Node, ...] = Field((), strict=False)


ForeachNode.model_rebuild()
Flow.model_rebuild()

AnyNode = StepNode | ForeachNode | ApprovalNode
