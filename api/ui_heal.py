"""The run page's healer (ui.healer.RunHealer, on ``app.state.ui_healer``): self-healing as the API runs it
(``api.healing``: the configured model or the rules alone, the fix re-proved at apply time), for one owner."""

from __future__ import annotations

from dataclasses import dataclass

from api.healing import HealChangedError, apply_reviewed, fingerprint, healing_of
from api.settings import Settings
from copilot.healing import Healing
from engine.runtime import owned_runs
from engine.runtime.runtime import Runtime
from ui import healer as view


@dataclass
class UiHealer:
    runtime: Runtime
    settings: Settings | None = None  # None: read from the environment on first use

    def _settings(self) -> Settings:
        if self.settings is None:
            self.settings = Settings()
        return self.settings

    def _owned(self, run_id: str, owner: str) -> None:
        head = owned_runs.head(self.runtime.db, run_id) if len(run_id) <= 26 else None
        if head is None or head.owner_id != owner:
            raise view.NotFound(f"you have no run {run_id!r}")

    def heal(self, run_id: str, *, owner: str) -> view.Healing:
        self._owned(run_id, owner)
        return _view(healing_of(self.runtime.orchestrator, self._settings(), run_id))

    def apply(self, run_id: str, *, owner: str, fingerprint: str = "", as_is: bool = False) -> view.Resumed:
        self._owned(run_id, owner)
        try:
            done = apply_reviewed(
                self.runtime.orchestrator,
                self._settings(),
                run_id,
                as_is=as_is,
                reviewed=fingerprint or None,
                triggers=self.runtime.triggers,
            )
        except HealChangedError as e:
            raise view.Changed(_view(e.healing)) from None
        cause = done.healing.diagnosis if done.healing is not None else None
        return view.Resumed(
            done.run_id, done.version, done.resumed_from, cause.cause if cause else "", cause.by if cause else ""
        )


def _view(healing: Healing) -> view.Healing:
    failed, d, v = healing.failed, healing.diagnosis, healing.verification
    proof = None
    if v is not None:
        outcome: view.Outcome = "verified" if healing.verified else ("dry" if healing.checked else "fails")
        proof = view.Proof(outcome, v.describe())
    return view.Healing(
        run_id=failed.run_id,
        flow_id=failed.flow_id,
        step=failed.key,
        node_type=failed.node_type,
        error_code=failed.error.code,
        error_message=failed.error.message,
        cause=d.cause,
        summary=d.summary,
        detail=d.detail if d.detail != failed.error.message else "",
        by=d.by,
        fix=d.fix.description if d.fix else "",
        action=d.fix.action if d.fix else "",
        resume_as_is=d.fix.resume_as_is if d.fix else False,
        diff=healing.diff,
        problems=healing.problems,
        proof=proof,
        cost_change=healing.cost_change,
        fingerprint=fingerprint(healing),
    )
