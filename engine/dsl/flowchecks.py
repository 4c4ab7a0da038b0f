"""Flow-level checks: the ``inputs`` schema, declared secrets, and triggers (cron, time zones, subjects,
webhook secrets)."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from croniter import CroniterBadDateError, croniter

from engine.dsl.checker import CheckerBase
from engine.dsl.issue import Path
from engine.dsl.metaschema import instance_problems, schema_problem
from engine.dsl.model import CronTrigger, EventTrigger, WebhookTrigger
from engine.dsl.structure import did_you_mean, suggest

_CRON_REFERENCE = datetime(2024, 1, 1)
JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")
_SUBJECT_TOKEN = re.compile(r"^[^\s.*>]+$")


class FlowChecks(CheckerBase):
    def _check_flow_level(self) -> None:
        if self.flow.inputs is not None:
            self._check_inputs(self.flow.inputs)
        seen: dict[str, int] = {}
        for i, name in enumerate(self.flow.secrets):
            if name in seen:
                self.report(
                    "secret.duplicate",
                    f"secret '{name}' is declared twice",
                    ("secrets", i),
                    hint="remove one",
                )
            seen[name] = i
        kinds: set[str] = set()
        for i, trigger in enumerate(self.flow.triggers):
            base: Path = ("triggers", i)
            if trigger.type in ("manual", "flow") and trigger.type in kinds:
                self.report(
                    "trigger.duplicate",
                    f"a second `{trigger.type}` trigger adds nothing",
                    base,
                    severity="warning",
                    hint="remove it",
                )
            kinds.add(trigger.type)
            if isinstance(trigger, CronTrigger):
                self._check_cron(trigger, base)
            elif isinstance(trigger, EventTrigger):
                self._check_subject(trigger.subject, (*base, "subject"))
            elif isinstance(trigger, WebhookTrigger) and trigger.secret is None and trigger.signature is not None:
                self.report(
                    "trigger.signature_without_secret",
                    "the webhook declares a signature but no `secret` to verify it with",
                    (*base, "signature"),
                    key=True,
                    hint="add secret: <name of a declared secret holding the signing key>",
                )
            elif isinstance(trigger, WebhookTrigger) and trigger.secret is not None:
                self.used_secrets.add(trigger.secret)
                if trigger.secret not in self.flow.secrets:
                    self.report(
                        "ref.undeclared_secret",
                        f"webhook secret '{trigger.secret}' is not declared",
                        (*base, "secret"),
                        hint=f"add '{trigger.secret}' to the flow's secrets list",
                    )
        for i, name in enumerate(self.flow.secrets):
            if name not in self.used_secrets and seen.get(name) == i:
                self.report(
                    "secret.unused",
                    f"secret '{name}' is declared but never used",
                    ("secrets", i),
                    severity="warning",
                    hint="remove it, or read it with {{ secrets." + name + " }}",
                )

    def _check_inputs(self, schema: dict[str, Any]) -> None:
        problem = schema_problem(schema)
        if problem is not None:
            reason = problem.message
            if problem.path and problem.path[-1] == "type" and isinstance(problem.instance, str):
                guess = suggest(problem.instance, JSON_TYPES)
                reason = f"{problem.instance!r} is not a JSON Schema type" + (
                    f"; did you mean '{guess}'?" if guess else f" (types: {', '.join(JSON_TYPES)})"
                )
            self.report(
                "inputs.invalid_schema",
                f"`inputs` is not a valid JSON Schema: {reason}",
                ("inputs", *problem.path),
                hint="inputs is a JSON Schema of the run input: {type: object, properties: {days: {type: integer}}}",
            )
            return
        if schema.get("type", "object") != "object":
            self.report(
                "inputs.not_object",
                "`inputs` must describe an object (type: object)",
                ("inputs", "type"),
                hint="run input is always a mapping of named values",
            )

    def _check_cron(self, trigger: CronTrigger, base: Path) -> None:
        fields = trigger.cron.split()
        if not trigger.cron.startswith("@") and len(fields) != 5:
            self.report(
                "trigger.cron_invalid",
                f"cron {trigger.cron!r} has {len(fields)} fields; FluxGraph cron has 5",
                (*base, "cron"),
                hint="minute hour day-of-month month day-of-week, e.g. '30 8 * * MON-FRI'",
            )
        elif not croniter.is_valid(trigger.cron):
            self.report(
                "trigger.cron_invalid",
                f"cron {trigger.cron!r} is not a valid schedule",
                (*base, "cron"),
                hint="minute hour day-of-month month day-of-week, e.g. '30 8 * * MON-FRI' or '@daily'",
            )
        elif not _fires(trigger.cron):
            self.report(
                "trigger.cron_never_fires",
                f"cron {trigger.cron!r} is valid but never fires (no such date)",
                (*base, "cron"),
                hint="check the day of month against the month (e.g. 31 in February never happens)",
            )
        if not _valid_zone(trigger.timezone):
            guess = suggest(trigger.timezone, _zones())
            self.report(
                "trigger.timezone_invalid",
                f"unknown time zone {trigger.timezone!r}" + did_you_mean(guess),
                (*base, "timezone"),
                hint="use an IANA name such as Europe/Lisbon, America/New_York or UTC",
            )
        if trigger.input is not None and self.flow.inputs and schema_problem(self.flow.inputs) is None:
            for where, message in instance_problems(self.flow.inputs, trigger.input):
                self.report(
                    "trigger.input_invalid",
                    f"cron input does not match `inputs`: {message}",
                    (*base, "input", *where),
                    hint="make the fixed input match the flow's inputs schema",
                )

    def _check_subject(self, subject: str, path: Path) -> None:
        tokens = subject.split(".")
        bad = not subject or any(
            not (t == "*" or (t == ">" and k == len(tokens) - 1) or _SUBJECT_TOKEN.match(t))
            for k, t in enumerate(tokens)
        )
        if bad:
            self.report(
                "trigger.subject_invalid",
                f"{subject!r} is not a valid event subject",
                path,
                hint="dot-separated tokens, no spaces; '*' is one token, '>' the rest (last only): orders.*.created",
            )


def _fires(expression: str) -> bool:
    """Whether a schedule ever fires: searched from a fixed date (never the clock), 8 years covers 29 Feb."""
    try:
        croniter(expression, _CRON_REFERENCE).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def _valid_zone(name: str) -> bool:
    return name in _zone_set()


@cache
def _zones() -> tuple[str, ...]:
    """The IANA zone names shipped with the ``tzdata`` package: the same on every machine (a host's own
    database may also hold ``localtime`` or ``posixrules``, which would make a flow valid here and not there)."""
    return tuple(sorted((resources.files("tzdata") / "zones").read_text("utf-8").split()))


@cache
def _zone_set() -> frozenset[str]:
    return frozenset(_zones())
