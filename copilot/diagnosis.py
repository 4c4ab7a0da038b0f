"""Why a step failed, from its recorded context, without a model: the common causes and their fixes.

:func:`diagnose` reads a :class:`engine.runtime.failures.FailedStep` and answers a :class:`Diagnosis`: a stable
``cause`` (what evaluations score), what was seen, where (node, field, line of code), and a :class:`Fix` when one
follows from the facts alone: FluxGraph edits (``copilot.edits`` operations), or an action only a person can take
(set a secret), or "resume as it is" for a failure that went away. Every name a fix puts in is one that exists in
the recorded data (the closest key of the actual upstream output, the closest input, the closest model alias),
never a guess; a cause whose fix needs judgement (a URL that answers 404, an exception in code) is diagnosed and
left to the model (``copilot.model_healing``) or to the user.

Causes: ``credentials`` (401/403, a provider's auth error), ``secret_missing``, ``url_not_found`` (404),
``transient`` (429, 5xx, connection failures, timeouts: retry policy or timeout), ``host_not_allowed``,
``path_not_found`` (a JSON path or a field of an upstream output), ``undefined_name`` (an expression's input,
node or variable), ``schema_mismatch`` (a value of the wrong shape between steps: a mapping), ``sandbox_limit``
(fuel, memory, time: a raised limit within the operator's maxima), ``budget``, ``code_error`` (the line),
``model_unknown``, ``not_configured`` (the operator's settings), and ``unknown``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from copilot.edits import Operation, SetBudget, UpdateNode
from engine.runtime.failures import FailedStep
from engine.steps.wasm import SandboxPolicy

TRANSIENT_CODES = frozenset(
    {
        "http.timeout",
        "step.timeout",
        "http.connection_failed",
        "http.dns_failed",
        "llm.rate_limited",
        "llm.unavailable",
        "llm.timeout",
        "step.crashed",
        "event.unavailable",
        "email.connection_failed",
    }
)
TIMEOUT_CODES = frozenset({"http.timeout", "step.timeout", "llm.timeout"})
RETRY: dict[str, Any] = {
    "max_attempts": 4,
    "backoff": "exponential",
    "initial_delay": "2s",
    "max_delay": "30s",
    "jitter": True,
}
_REFERENCE = re.compile(r"\b(nodes|inputs|item|trigger|run)((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])+)")
_QUOTED = re.compile(r"'([^']+)'")
_LINE = re.compile(r"\(line (\d+) of the code\)")
_SECRET = re.compile(r"secrets\.([A-Za-z_][A-Za-z0-9_-]*)")


@dataclass(frozen=True)
class Fix:
    """What would fix it: edits to the flow, an action for a person, or resuming as it is."""

    description: str
    operations: tuple[Operation, ...] = ()
    action: str = ""  # a person's step ("set the secret shop_token: ionflux secrets set shop_token")
    resume_as_is: bool = False  # the failure was transient: resuming may be enough

    @property
    def edits_flow(self) -> bool:
        return bool(self.operations)


@dataclass(frozen=True)
class Diagnosis:
    cause: str
    summary: str  # one line: what went wrong
    detail: str  # what was seen, where
    fix: Fix | None = None
    by: str = "rules"  # rules | model:NAME
    location: dict[str, Any] = field(default_factory=dict)  # node, field, line (of code)

    def to_dict(self) -> dict[str, Any]:
        fix = None
        if self.fix is not None:
            fix = {
                "description": self.fix.description,
                "operations": [op.model_dump(exclude_none=True) for op in self.fix.operations],
                "action": self.fix.action or None,
                "resume_as_is": self.fix.resume_as_is,
            }
        return {
            "cause": self.cause,
            "summary": self.summary,
            "detail": self.detail,
            "by": self.by,
            "location": self.location,
            "fix": fix,
        }


def diagnose(
    failed: FailedStep,
    *,
    aliases: tuple[str, ...] = (),
    sandbox: SandboxPolicy | None = None,
    forecast_cion: float | None = None,
) -> Diagnosis:
    """The cause of ``failed``'s error and, where the facts allow, its fix. ``forecast_cion``: the flow's forecast
    of one run (a raised budget covers the whole run, not only the step that hit it)."""
    code, message = failed.error.code, failed.error.message
    where = {"node": failed.node_id, "key": failed.key}
    if code == "http.status" and failed.http_status in (401, 403):
        return _credentials(failed, where)
    if "secrets not set" in message or (code == "expr.undefined" and "secrets" in message):
        listed = re.search(r"secrets not set: ([^;)]+)", message)
        names = [n.strip() for n in listed.group(1).split(",")] if listed else _SECRET.findall(message)
        names = list(dict.fromkeys(names))  # a template quoted twice in the message names its secret twice
        missing = ", ".join(names) or "the flow's secrets"
        plural = "s" if len(names) > 1 else ""
        commands = " && ".join(f"ionflux secrets set {n}" for n in names) or "ionflux secrets set NAME"
        return Diagnosis(
            "secret_missing",
            f"the secret{plural} {missing} {'are' if plural else 'is'} not set",
            message,
            Fix(f"set the secret{plural} {missing}, then resume", action=commands),
            location=where,
        )
    if code == "http.status" and failed.http_status == 404:
        url = _mapping(failed.node, "with").get("url")
        return Diagnosis(
            "url_not_found",
            f"the URL answered 404 Not Found: {_url_of(message)}",
            f"{message}\nwith.url is {url!r}: check the path (a typo, a renamed endpoint, a missing id).",
            location={**where, "field": "with.url"},
        )
    if (code == "http.status" and failed.http_status is not None and (failed.http_status == 429 or
                                                                       failed.http_status >= 500)) or (
        code in TRANSIENT_CODES
    ):  # fmt: skip
        return _transient(failed, where)
    if code == "http.host_not_allowed":
        return _host(failed, where)
    if code == "step.path_not_found":
        return _path(failed, where)
    if code == "expr.undefined":
        return _undefined(failed, where)
    if code in ("step.invalid_input", "foreach.items_not_list"):
        return _shape(failed, where)
    if code in ("sandbox.fuel_exhausted", "sandbox.memory_limit", "sandbox.timeout"):
        return _sandbox(failed, where, sandbox or SandboxPolicy())
    if code == "budget.exceeded":
        return _budget(failed, where, forecast_cion)
    if code in ("code.error", "code.syntax", "code.no_main", "code.bad_output"):
        return _code(failed, where)
    if code == "llm.model_not_found":
        return _model(failed, where, aliases)
    if code in ("llm.auth",):
        return Diagnosis(
            "credentials",
            "the model provider refused the credentials",
            message,
            Fix("set the provider's API key for this model alias, then resume", action="set the provider's API key"),
            location=where,
        )
    if code in ("email.not_configured",):
        return Diagnosis(
            "not_configured",
            "email is not configured on this server",
            message,
            Fix("configure SMTP (IONFLUX_SMTP_URL), then resume", action="set IONFLUX_SMTP_URL"),
            location=where,
        )
    return Diagnosis("unknown", f"{failed.node_id} failed: {code}", message, location=where)


# --- the causes -----------------------------------------------------------------------------------------------


def _credentials(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    names = sorted(set(_SECRET.findall(repr(_mapping(failed.node, "with")))))
    status = failed.http_status
    if names:
        shown = ", ".join(names)
        fix = Fix(
            f"the request sends the secret {shown}: set it to a valid credential, then resume",
            action=f"ionflux secrets set {names[0]}",
        )
        detail = f"{failed.error.message}\nThe request authenticates with the secret {shown}, which was refused."
    else:
        fix = None
        detail = f"{failed.error.message}\nThe request sends no credentials (with.auth, with.headers): add them."
    return Diagnosis(
        "credentials",
        f"the server refused the credentials ({status})",
        detail,
        fix,
        location={**where, "field": "with.auth"},
    )


def _transient(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    code, status = failed.error.code, failed.http_status
    what = f"answered {status}" if status else code
    current = _mapping(failed.node, "retry")
    attempts = int(current.get("max_attempts", 1))
    retry = {**RETRY, **{k: v for k, v in current.items() if k != "max_attempts"}}
    retry["max_attempts"] = max(4, attempts + 2)
    changes: dict[str, Any] = {"retry": retry}
    said = f"retry it up to {retry['max_attempts']} times with exponential backoff"
    if code in TIMEOUT_CODES:
        seconds = _seconds(failed.node.get("timeout")) or 30.0
        changes["timeout"] = _duration(min(seconds * 2, 300))
        said += f" and give it {changes['timeout']} instead of {_duration(seconds)}"
    return Diagnosis(
        "transient",
        f"a transient failure: {what} after {failed.attempts} attempt(s)",
        failed.error.message,
        Fix(said, (UpdateNode(id=failed.node_id, set=changes),), resume_as_is=True),
        location=where,
    )


def _host(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    found = re.search(r"(\S+) is not in this node's permissions\.net", failed.error.message)
    host = found.group(1) if found else ""
    permissions = _mapping(failed.node, "permissions")
    net = [*(permissions.get("net") or [])]
    fix = None
    if host and host not in net:
        fix = Fix(
            f"allow the node to reach {host} (permissions.net)",
            (UpdateNode(id=failed.node_id, set={"permissions.net": [*net, host]}),),
        )
    return Diagnosis(
        "host_not_allowed",
        f"the node may not reach {host or 'that host'}",
        failed.error.message,
        fix,
        location={**where, "field": "permissions.net"},
    )


def _path(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    """A JSON path that misses: the closest path that exists in the data the step actually had."""
    with_ = _mapping(failed.node, "with")
    path = str(with_.get("path", ""))
    data = _evaluated(with_.get("data"), failed.context)
    better = closest_path(data, path) if data is not None and path else None
    fix = None
    if better is not None and better != path:
        fix = Fix(f"read {better!r} instead of {path!r}", (UpdateNode(id=failed.node_id, set={"with.path": better}),))
    return Diagnosis(
        "path_not_found",
        f"the path {path!r} is not in the data" + (f"; the closest that is: {better!r}" if better else ""),
        failed.error.message,
        fix,
        location={**where, "field": "with.path"},
    )


def _undefined(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    """An expression reads a name the context does not have: the closest that it has, field by field."""
    for field_path, text in _strings(failed.node):
        for found in _REFERENCE.finditer(text):
            reference = found.group(0)
            corrected = closest_reference(reference, failed.context)
            if corrected is None or corrected == reference:
                continue
            fixed = text.replace(reference, corrected)
            return Diagnosis(
                "undefined_name",
                f"{field_path} reads {reference}, which the run does not have; it has {corrected}",
                failed.error.message,
                Fix(
                    f"read {corrected} instead of {reference}",
                    (UpdateNode(id=failed.node_id, set={field_path: fixed}),),
                ),
                location={**where, "field": field_path},
            )
    return Diagnosis(
        "undefined_name", "an expression reads a name the run does not have", failed.error.message, location=where
    )


def _shape(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    """A list was expected and an object came: map to the object's one list (``orders`` of ``{orders: [...]}``)."""
    field_name = "items"
    source = failed.node.get(field_name) if failed.error.code == "foreach.items_not_list" else None
    field_path = field_name
    if source is None:
        with_ = _mapping(failed.node, "with")
        named = re.search(r"with\.([A-Za-z_][A-Za-z0-9_]*)", failed.error.message)
        field_name = named.group(1) if named else "items"
        source = with_.get(field_name)
        field_path = f"with.{field_name}"
    value = _evaluated(source, failed.context)
    fix = None
    if isinstance(source, str) and isinstance(value, Mapping):
        lists = [k for k, v in value.items() if isinstance(v, list)]
        inner = re.fullmatch(r"\{\{\s*(.+?)\s*\}\}", source.strip())
        if len(lists) == 1 and inner is not None:
            mapped = f"{{{{ {inner.group(1)}.{lists[0]} }}}}"
            fix = Fix(
                f"take the list {lists[0]!r} out of the object: {mapped}",
                (UpdateNode(id=failed.node_id, set={field_path: mapped}),),
            )
    return Diagnosis(
        "schema_mismatch",
        f"{field_path} got {type(value).__name__ if value is not None else 'a value'} where a list was expected",
        failed.error.message,
        fix,
        location={**where, "field": field_path},
    )


def _sandbox(failed: FailedStep, where: dict[str, Any], policy: SandboxPolicy) -> Diagnosis:
    code = failed.error.code
    permissions = _mapping(failed.node, "permissions")
    maxima, defaults = policy.maxima, policy.defaults
    value: int | str
    if code == "sandbox.fuel_exhausted":
        current = int(permissions.get("fuel") or defaults.fuel)
        wanted = min(current * 10, maxima.fuel)
        path, value, what = "permissions.fuel", wanted, f"fuel {current:,} → {wanted:,}"
        room = wanted > current
    elif code == "sandbox.memory_limit":
        current = int(permissions.get("memory_mb") or defaults.memory_mb)
        wanted = min(current * 4, maxima.memory_mb)
        path, value, what = "permissions.memory_mb", wanted, f"memory {current} → {wanted} MiB"
        room = wanted > current
    else:
        current_s = _seconds(failed.node.get("timeout")) or float(defaults.timeout_seconds)
        wanted_s = min(current_s * 4, float(maxima.timeout_seconds))
        path, value, what = "timeout", _duration(wanted_s), f"timeout {_duration(current_s)} → {_duration(wanted_s)}"
        room = wanted_s > current_s
    fix = Fix(
        f"raise the limit: {what} (the operator's maximum allows it)",
        (UpdateNode(id=failed.node_id, set={path: value}),),
    )
    return Diagnosis(
        "sandbox_limit",
        f"the step hit a sandbox limit ({code.split('.')[1].replace('_', ' ')})",
        failed.error.message,
        fix if room else None,
        location={**where, "field": path},
    )


def _budget(failed: FailedStep, where: dict[str, Any], forecast_cion: float | None) -> Diagnosis:
    found = re.search(
        r"forecast ([\d.]+) C-ION\) would exceed the run budget of ([\d.]+) C-ION \(([\d.]+) spent",
        failed.error.message,
    )
    fix = None
    if found:
        forecast, cap, spent = (float(g) for g in found.groups())
        needed = max(spent + forecast, forecast_cion or 0.0)
        raised = math.ceil(needed * 1.25 * 10000) / 10000
        fix = Fix(
            f"raise the run budget from {cap:g} to {raised:g} C-ION (a run is forecast to need {needed:g})",
            (SetBudget(max_cion_per_run=raised),),
        )
    return Diagnosis(
        "budget",
        "the run's budget would be exceeded",
        failed.error.message,
        fix,
        location={**where, "field": "budget.max_cion_per_run"},
    )


def _code(failed: FailedStep, where: dict[str, Any]) -> Diagnosis:
    message = failed.error.message
    line_found = _LINE.search(message)
    line = int(line_found.group(1)) if line_found else None
    code_text = str(_mapping(failed.node, "with").get("code", ""))
    shown = code_text.splitlines()[line - 1].strip() if line and 0 < line <= len(code_text.splitlines()) else ""
    location = {**where, "field": "with.code", **({"line": line} if line else {})}
    fix = _key_error_fix(failed, code_text, message)
    summary = f"the code raised {message.split(':', 2)[1].strip() if message.count(':') >= 2 else message}"
    detail = message + (f"\nline {line}: {shown}" if shown else "")
    return Diagnosis("code_error", summary[:200], detail, fix, location=location)


def _key_error_fix(failed: FailedStep, code_text: str, message: str) -> Fix | None:
    """``KeyError: 'totl'`` on the step's input: the closest key the input actually has, put in the code."""
    found = re.search(r"KeyError: '([^']+)'", message)
    if not found:
        return None
    missing = found.group(1)
    data = _evaluated(_mapping(failed.node, "with").get("input"), failed.context)
    keys = sorted(_all_keys(data))
    better = difflib.get_close_matches(missing, keys, n=1, cutoff=0.6)
    if not better or (f"'{missing}'" not in code_text and f'"{missing}"' not in code_text):
        return None
    fixed = code_text.replace(f"'{missing}'", f"'{better[0]}'").replace(f'"{missing}"', f'"{better[0]}"')
    return Fix(
        f"the input has no key {missing!r}; it has {better[0]!r}",
        (UpdateNode(id=failed.node_id, set={"with.code": fixed}),),
    )


def _model(failed: FailedStep, where: dict[str, Any], aliases: tuple[str, ...]) -> Diagnosis:
    asked = str(_mapping(failed.node, "with").get("model", ""))
    better = difflib.get_close_matches(asked, list(aliases), n=1, cutoff=0.4) if asked else []
    fix = None
    if better:
        fix = Fix(f"use the model alias {better[0]!r}", (UpdateNode(id=failed.node_id, set={"with.model": better[0]}),))
    return Diagnosis(
        "model_unknown",
        f"the model {asked!r} is not configured",
        failed.error.message,
        fix,
        location={**where, "field": "with.model"},
    )


# --- the facts ------------------------------------------------------------------------------------------------


def closest_path(data: Any, path: str) -> str | None:
    """The path that exists in ``data`` closest to ``path`` (each missing segment replaced by the closest key at
    its level), or None when a segment has no close key."""
    parts = [p for p in path.replace("[", ".").replace("]", "").split(".") if p]
    current, out = data, []
    for part in parts:
        if isinstance(current, Mapping):
            if part not in current:
                near = difflib.get_close_matches(part, [str(k) for k in current], n=1, cutoff=0.6)
                if not near:
                    return None
                part = near[0]
            out.append(part)
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return None
            out.append(part)
            current = current[index]
        elif isinstance(current, list) and current and isinstance(current[0], Mapping):
            return None  # a field asked of a list: a mapping, not a path
        else:
            return None
    return ".".join(out)


def closest_reference(reference: str, context: Mapping[str, Any]) -> str | None:
    """``nodes.fetch.output.totl`` → ``nodes.fetch.output.total`` when the recorded context has that, walking
    segment by segment (``nodes.<id>`` picks among the nodes that ran)."""
    parts = re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", reference)
    current: Any = context
    out: list[str] = []
    for part in parts:
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(current, list) or not -len(current) <= index < len(current):
                return None
            out.append(part)
            current = current[index]
            continue
        if not isinstance(current, Mapping):
            return None
        if part not in current:
            near = difflib.get_close_matches(part, [str(k) for k in current], n=1, cutoff=0.6)
            if not near:
                return None
            part = near[0]
        out.append(part)
        current = current[part]
    return "".join(p if p.startswith("[") else f".{p}" for p in out).lstrip(".")


def _strings(node: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every string of a node that may hold an expression, with its dotted path (``with.url``, ``if``, ``items``)."""

    def walk(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
        if isinstance(value, str):
            yield prefix, value
        elif isinstance(value, Mapping):
            for k, v in value.items():
                yield from walk(f"{prefix}.{k}", v)

    for key in ("if", "items"):
        if isinstance(node.get(key), str):
            yield key, node[key]
    yield from walk("with", node.get("with") or {})


def _mapping(node: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = node.get(key)
    return value if isinstance(value, dict) else {}


def _evaluated(value: Any, context: Mapping[str, Any]) -> Any:
    """A ``with`` value as the step saw it (expressions evaluated on the recorded context; None if they fail)."""
    from engine.dsl.expression import ExpressionError, evaluate

    try:
        return evaluate(value, dict(context))
    except ExpressionError:
        return None


def _all_keys(data: Any) -> Iterator[str]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield str(k)
            yield from _all_keys(v)
    elif isinstance(data, list):
        for item in data[:20]:
            yield from _all_keys(item)


def _url_of(message: str) -> str:
    found = re.search(r"\b[A-Z]+ (\S+) answered", message)
    return found.group(1) if found else "the URL"


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", str(value))
    if not found:
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[found.group(2) or "s"]
    return float(found.group(1)) * scale


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
