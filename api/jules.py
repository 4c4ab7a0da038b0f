"""Jules as the product builds it from settings, for the CLI (``ionflux chat``) and the API alike: the model
(an alias, else IONFLUX_MODEL, resolved through the model aliases; none: the offline planner), the aliases a flow
may use, and the owner's secret names, which ground what a model may write."""

from __future__ import annotations

import sqlalchemy as sa

from api.settings import Settings
from copilot.chat import Jules
from copilot.structured import ModelChoice
from engine.nodetypes.registry import Registry


def model_choice(settings: Settings, alias: str | None = None, mode: str = "tools") -> ModelChoice | None:
    """The model Jules uses: ``alias`` (else IONFLUX_MODEL) resolved through the model aliases; None: offline."""
    name = alias or settings.model
    if not name:
        return None
    from engine.steps.llm import LlmSettings

    llm = LlmSettings(settings.model_routes(), settings.llm_api_base, settings.llm_timeout_seconds)
    route, _ = llm.route(name)
    return ModelChoice(
        route.model, route.api_base, route.api_key, settings.llm_timeout_seconds, "json" if mode == "json" else "tools"
    )


def jules_for(
    db: sa.Engine, registry: Registry, settings: Settings, secrets: tuple[str, ...], *, model: ModelChoice | None
) -> Jules:
    """Jules over ``db`` with ``model`` (None: offline), the configured aliases, and the owner's ``secrets``
    (names only: a model may use these and no other)."""
    return Jules(db, registry, model=model, aliases=tuple(settings.model_routes()), secrets=secrets)
