"""A client of a server's HTTP API (``/api/v1``) for the command line's remote mode: the run commands of
api.run_commands, asked over HTTP with an API token instead of the local database.

The answers come back as the values the local commands already render (engine.runtime.queries' ``RunSummary``
and ``StepRecord``), so a remote run is shown exactly as a local one. Every request carries ``X-IONFLUX: 1``: the
open local demo (``./scripts/start``) takes changes without a token only from a client that sends it, which a
web page posting from the user's browser cannot.

Errors (all IonfluxError, printed as the local commands print theirs: code, message, hint)::

    RemoteError                   the server could not be asked, or it refused
     +-- ServerAddressError       --server / IONFLUX_SERVER is not an http(s) URL        remote.server_invalid
     +-- UnreachableError         no answer: connection refused, unknown host, timeout   remote.unreachable
     +-- UnexpectedAnswerError    an answer that is not the API's (an HTML page, a proxy) remote.bad_answer
     +-- RefusedError             the API's own refusal: its {code, message, hint} and the HTTP status
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from engine.errors import IonfluxError
from engine.runtime.queries import RunSummary, StepRecord

API = "/api/v1"
PAGE = 200  # the API's largest page
PREFIX_SCAN = 1000  # how many of the newest runs a short id (a prefix) is looked up among
LOOPBACK = ("localhost", "::1")
MAKE_TOKEN = "on the server, `ionflux token create NAME --scope write` makes one"


class RemoteError(IonfluxError):
    """Raised when the server could not be asked, or refused (never raised itself: one of the classes below)."""

    code = "remote.error"


class ServerAddressError(RemoteError):
    """Raised when the server address (``--server``, IONFLUX_SERVER) is not an http:// or https:// URL."""

    code = "remote.server_invalid"


class UnreachableError(RemoteError):
    """Raised when the server does not answer: the connection is refused, the host unknown, or it times out."""

    code = "remote.unreachable"
    retryable = True


class UnexpectedAnswerError(RemoteError):
    """Raised when something answers that is not IONFLUX's API (not its JSON or its error model)."""

    code = "remote.bad_answer"


class RefusedError(RemoteError):
    """Raised when the API refuses a request: its ``{code, message, hint, location}`` and the HTTP status."""

    def __init__(self, status: int, code: str, message: str, *, hint: str = "", location: Any = None) -> None:
        super().__init__(message, hint=hint, code=code)
        self.status = status
        self.location = location
        self.retryable = status >= 500


@dataclass(frozen=True, slots=True)
class Server:
    """Where the API is and the token to show it (kept out of ``repr``, so it is never printed by accident)."""

    url: str  # the base address, e.g. http://127.0.0.1:8080 (the API is under /api/v1)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, address: str, token: str | None = None) -> Server:
        text = address.strip().rstrip("/")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerAddressError(
                f"the server address {address!r} is not an http:// or https:// URL",
                hint="pass the server's base address, e.g. --server http://127.0.0.1:8080 (or set IONFLUX_SERVER)",
            )
        return cls(text.removesuffix(API).rstrip("/"), token or None)

    @property
    def in_clear(self) -> bool:
        """Whether a token would cross the network unencrypted (plain http to another machine)."""
        host = urlsplit(self.url).hostname or ""
        return self.url.startswith("http://") and not (host in LOOPBACK or host.startswith("127."))


@dataclass(frozen=True, slots=True)
class RemoteRun:
    """A run as ``GET /api/v1/runs/{id}`` shows it: the summary, each step's latest attempt, pending approvals."""

    summary: RunSummary
    steps: list[StepRecord]
    approvals: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Acted:
    """What an action on a run answered: the run's status after it, and the approval step it decided."""

    run_id: str
    status: str
    step: str | None


@dataclass(frozen=True, slots=True)
class Sse:
    """One Server-Sent Event: ``id`` is the run's event seq (none for live, unrecorded events such as tokens)."""

    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


class Remote:
    """The API's run routes, synchronously (the command line waits for each answer anyway)."""

    def __init__(self, server: Server, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.server = server
        headers = {"Accept": "application/json", "User-Agent": "ionflux-cli", "X-IONFLUX": "1"}
        if server.token:
            headers["Authorization"] = f"Bearer {server.token}"
        self._http = httpx.Client(
            base_url=server.url + API,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- flows and runs ---------------------------------------------------------------------------------------

    def save_flow(self, source: str) -> tuple[str, str]:
        """Store a flow's YAML (a new version if it changed) -> (flow id, version id)."""
        saved = self._send(
            "POST", "/flows", content=source.encode("utf-8"), headers={"Content-Type": "application/yaml"}
        )
        return str(saved["id"]), str(saved["version"])

    def start_run(self, flow_id: str, value: Any, version: str | None = None) -> str:
        started = self._send("POST", f"/flows/{_segment(flow_id)}/runs", json={"input": value, "version": version})
        return str(started["run_id"])

    def runs(self, *, limit: int, flow: str | None = None, status: str | None = None) -> list[RunSummary]:
        """The newest ``limit`` runs (over as many pages as that takes), optionally of one flow or status."""
        found: list[RunSummary] = []
        cursor: str | None = None
        while len(found) < limit:
            query = {"limit": min(PAGE, limit - len(found)), "flow": flow, "status": status, "cursor": cursor}
            page = self._send("GET", "/runs", params={k: v for k, v in query.items() if v is not None})
            found += [_summary(item) for item in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    def run_id(self, given: str) -> str:
        """The full id of a run given by id or by a unique prefix of 6+ characters, as the local commands take it
        (the API takes whole ids only); anything else is passed on as given, for the server to answer 404."""
        if len(given) >= 26 or len(given) < 6:
            return given
        wanted = given.upper()
        matches = [r.id for r in self.runs(limit=PREFIX_SCAN) if r.id.startswith(wanted)]
        return matches[0] if len(matches) == 1 else given

    def run(self, run_id: str) -> RemoteRun:
        detail = self._send("GET", f"/runs/{_segment(run_id)}")
        return RemoteRun(
            _summary(detail),
            [_step(s) for s in detail.get("steps", [])],
            [dict(a) for a in detail.get("approvals", [])],
        )

    def act(self, run_id: str, action: str, body: dict[str, Any] | None = None) -> Acted:
        """``action``: cancel, pause, resume, approve, reject or rerun."""
        done = self._send("POST", f"/runs/{_segment(run_id)}/{action}", json=body or {})
        return Acted(str(done["run_id"]), str(done["status"]), done.get("step"))

    def events(self, run_id: str, *, after: int = 0, read_timeout: float = 30.0) -> Iterator[Sse]:
        """The run's events after seq ``after``, as they come; ends with ``end`` once the run has finished. A
        stream that drops or stays silent past ``read_timeout`` just ends: resume it after the last id seen."""
        timeout = httpx.Timeout(read_timeout, connect=10.0)
        path = f"/runs/{_segment(run_id)}/events"
        request = self._http.build_request(
            "GET", path, params={"after": after}, headers={"Accept": "text/event-stream"}, timeout=timeout
        )
        try:
            answer = self._http.send(request, stream=True)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        try:
            if answer.status_code != 200:
                answer.read()
                self._json(answer)  # raises the API's refusal
                raise self._unexpected(answer)
            fields: dict[str, str] = {}
            data: list[str] = []
            for line in answer.iter_lines():
                if not line:  # a blank line dispatches the event gathered so far
                    if data:
                        yield Sse(fields.get("event", "message"), "\n".join(data), fields.get("id"))
                    fields, data = {}, []
                elif not line.startswith(":"):  # ": ping" comments keep the connection open, nothing more
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError):
            return  # the caller reconnects after the last seq it saw, or gives up at its deadline
        finally:
            answer.close()

    # --- HTTP -------------------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        try:
            answer = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        return self._json(answer)

    def _json(self, answer: httpx.Response) -> Any:
        try:
            body = answer.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self._unexpected(answer) from None
        if answer.is_success:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            raise self._unexpected(answer)
        raise self._refusal(answer.status_code, error)

    def _refusal(self, status: int, error: dict[str, Any]) -> RefusedError:
        code, message, hint = error["code"], str(error.get("message", "")), str(error.get("hint") or "")
        where = self.server.url
        if code == "auth.required":
            message = f"the server at {where} needs an API token, and none was sent"
            hint = f"pass --token or set IONFLUX_TOKEN; {MAKE_TOKEN}"
        elif code == "auth.invalid":
            message = f"the server at {where} does not accept this API token (it is unknown or revoked)"
            hint = f"check --token / IONFLUX_TOKEN; {MAKE_TOKEN}"
        elif code == "auth.forbidden":
            message = f"the server at {where} refused: {message}"
            hint = "ask with a token of a wider scope (read < write < admin): " + MAKE_TOKEN
        elif code == "route.not_found":
            message = f"{where} has no API route for this request: is it an IONFLUX server of this version?"
            hint = "pass the server's base address, e.g. --server http://127.0.0.1:8080 (the API is under /api/v1)"
        elif code == "run.not_found":
            message = f"{message} on {where}"
            hint = "`ionflux runs` lists your runs there (another owner's runs are not found either)"
        elif status == 404:
            message = f"{message} on {where}"
        return RefusedError(status, code, message, hint=hint, location=error.get("location"))

    def _unreachable(self, error: httpx.TransportError) -> UnreachableError:
        if isinstance(error, httpx.TimeoutException):
            reason = "it did not answer in time"
        else:
            reason = str(error).split("] ", 1)[-1] or type(error).__name__  # "[Errno 111] Connection refused"
        return UnreachableError(
            f"cannot reach the IONFLUX server at {self.server.url}: {reason}",
            hint="check the address (--server, IONFLUX_SERVER) and that the server runs there (`ionflux up`)",
        )

    def _unexpected(self, answer: httpx.Response) -> UnexpectedAnswerError:
        kind = answer.headers.get("content-type", "no content type").split(";", 1)[0]
        return UnexpectedAnswerError(
            f"{answer.request.url} answered {answer.status_code} {answer.reason_phrase} ({kind}), "
            "not as IONFLUX's API does",
            hint="pass the IONFLUX server's base address, e.g. --server http://127.0.0.1:8080",
        )


# --- answers as the local commands' values ----------------------------------------------------------------------


def _segment(value: str) -> str:
    """A path segment as typed (a run id, a flow id): escaped, so it can only ever name one resource."""
    return quote(value, safe="")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _summary(item: dict[str, Any]) -> RunSummary:
    created = _time(item["created_at"])
    assert created is not None, "the API always gives created_at"
    return RunSummary(
        id=item["id"],
        flow_id=item["flow_id"],
        version_id=item["version_id"],
        status=item["status"],
        trigger_kind=item["trigger"],
        created_at=created,
        finished_at=_time(item.get("finished_at")),
        total_cion=float(item["total_cion"]),
        attempt=int(item["attempt"]),
        error=item.get("error"),
        outputs=item.get("outputs"),
        input=item.get("input"),
        parent_run_id=item.get("parent_run_id"),
    )


def _step(item: dict[str, Any]) -> StepRecord:
    return StepRecord(
        key=item["key"],
        node_id=item["node_id"],
        iteration=item.get("iteration"),
        node_type=item.get("node_type"),
        status=item["status"],
        attempt=int(item["attempt"]),
        run_attempt=int(item["run_attempt"]),
        waiting=item.get("waiting"),
        started_at=_time(item.get("started_at")),
        finished_at=_time(item.get("finished_at")),
        input_preview=item.get("input_preview"),
        output_preview=item.get("output_preview"),
        output_ref=None,  # the API reads a large output for you (GET …/steps/{key}/output) instead
        error=item.get("error"),
        logs=item.get("logs"),
        cost_cion=float(item.get("cost_cion") or 0),
        reused=bool(item.get("reused")),
        child_run_id=item.get("child_run_id"),
        usage=item.get("usage"),
    )
