"""A flow that tries every way to leak a secret (log it, output it, echo it back from an API, put it in an error,
hand it to an LLM) never exposes its value: searched across the whole database (every table; for SQLite the
raw file and its write-ahead log too), the blob store, the process's log records, the live event stream and
every request the LLM provider received."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.store.tables import metadata
from tests import llm_script
from tests.runtime_helpers import BACKENDS, flow, running
from tests.test_http import Handler

SECRET = "tok-9f8e7d6c5b4a-SECRET"


@pytest.fixture(scope="module")
def api_server() -> Iterator[str]:
    """The loopback JSON API of test_http (``/echo`` returns the request, ``/fail`` answers 500)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leaky_flow(server: str) -> str:
    port = server.rsplit(":", 1)[1]
    return flow(
        f"""
        fluxgraph: 1
        id: leaky
        secrets: [api_token]
        nodes:
          - id: fetch
            type: http.request
            permissions: {{net: ["127.0.0.1:{port}"]}}
            with:
              url: "{server}/echo?key={{{{ secrets.api_token }}}}"
              headers: {{X-Token: "{{{{ secrets.api_token }}}}"}}
          - id: shout
            type: log
            with: {{message: "the token is {{{{ secrets.api_token }}}}"}}
          - id: keep
            type: data.set
            with: {{token: "{{{{ secrets.api_token }}}}", quoted: "{{{{ ['a', secrets.api_token] | tojson }}}}"}}
          - id: broken
            type: http.request
            permissions: {{net: ["127.0.0.1:{port}"]}}
            on_error: continue
            with: {{url: "{server}/fail?token={{{{ secrets.api_token }}}}"}}
          - id: ask
            type: llm.complete
            needs: [fetch, keep]
            with:
              prompt: "Summarise {{{{ nodes.fetch.output.body | tojson }}}} and {{{{ nodes.keep.output | tojson }}}}"
              stream: true
        outputs:
          echoed: "{{{{ nodes.fetch.output.body }}}}"
          kept: "{{{{ nodes.keep.output }}}}"
          summary: "{{{{ nodes.ask.output.text }}}}"
        """
    )


def everything_in_the_database(engine: sa.Engine) -> str:
    parts = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)).all():
                parts.append(repr(tuple(row)))
    return "\n".join(parts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_secret_never_reaches_the_record_the_logs_the_live_stream_or_the_llm(
    api_server: str,
    tmp_path: Path,
    backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = llm_script.install()
    script.answers.append("A summary that tries to repeat " + SECRET)  # even a model echoing it is caught
    caplog.set_level(logging.DEBUG)
    settings = llm_script.settings()
    with running(backend, tmp_path, http_allow_networks=("127.0.0.1/32",), llm_models=dict(settings.models)) as rt:
        rt.orchestrator.secrets.set("api_token", SECRET)
        live: list[bytes] = []
        rt.bus.subscribe(">", lambda m: live.append(m.data))
        _, version = rt.orchestrator.save_flow(leaky_flow(api_server), "leaky.yaml")
        run_id = rt.orchestrator.start_run(version, None)
        assert str(rt.wait(run_id, 30)) == "succeeded"
        database = everything_in_the_database(rt.db)
        url = rt.config.database_url
    # the flow did run every leak: the API saw the token, the steps recorded their (redacted) results
    assert "***" in database and "the token is ***" in database
    assert '"code": "http.status"' in database or "http.status" in database
    assert len(script.requests) == 1 and any(b"llm.token" in m for m in live)
    # ...and the value is nowhere
    assert SECRET not in database
    if backend == "embedded":
        db_file = Path(url.removeprefix("sqlite:///"))
        for path in (db_file, db_file.with_name(db_file.name + "-wal")):
            if path.exists():
                raw = path.read_bytes()
                assert SECRET.encode() not in raw, path
    for blob in (tmp_path / "blobs").rglob("*"):
        if blob.is_file():
            assert SECRET.encode() not in blob.read_bytes(), blob
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert SECRET not in logged
    assert not any(SECRET.encode() in m for m in live)
    sent = json.dumps(script.requests)
    assert SECRET not in sent
    assert "***" in sent  # the model got the redacted outputs, not the value


def test_the_llm_never_receives_a_secret_a_step_passes_through_unredacted(tmp_path: Path) -> None:
    """Defence in depth: were a secret's value to reach an LLM step's fields, it is blanked before the call."""
    from engine.core.state import StepKey
    from engine.steps.call import StepCall
    from engine.steps.llm import REDACTED, complete

    script = llm_script.install()
    script.answers.append("fine")
    step = StepCall(StepKey("ask"), 1, "llm.complete", {"prompt": f"x {SECRET} y", "system": SECRET}, secrets=(SECRET,))
    complete(step, llm_script.settings())
    sent: Any = script.requests[0]["messages"]
    assert sent == [{"role": "system", "content": REDACTED}, {"role": "user", "content": f"x {REDACTED} y"}]


def _errors_of(use: str) -> list[str]:
    from engine.dsl.validator import check_flow

    text = flow(
        f"""
        fluxgraph: 1
        id: sneaky
        secrets: [api_token]
        nodes:
          - id: shout
            type: log
            with: {{message: "{use}"}}
        """
    )
    return [i.code for i in check_flow(text, "sneaky.yaml").errors]


@pytest.mark.parametrize(
    "use",
    [
        "{{ secrets.api_token | upper }}",
        "{{ secrets.api_token | trim }}",
        "{% for c in secrets.api_token %}{{ c }}.{% endfor %}",
        "{{ secrets.api_token.upper() }}",
        "{{ secrets.api_token[1:] }}",
        "x{{ secrets.api_token | replace('a', 'b') }}",
        "{{ 'k' ~ (secrets.api_token | reverse) }}",
    ],
)
def test_a_transformed_secret_is_refused_since_it_could_not_be_redacted(use: str) -> None:
    assert "secret.transformed" in _errors_of(use)


@pytest.mark.parametrize(
    "use",
    [
        "{{ secrets.api_token }}",
        "Bearer {{ secrets.api_token }}",
        "{{ 'Bearer ' ~ secrets.api_token }}",
        "{{ 'x' if secrets.api_token == 'y' else 'z' }}",
        "{{ [secrets.api_token] | tojson }}",
    ],
)
def test_a_secret_used_as_it_is_is_accepted(use: str) -> None:
    assert _errors_of(use) == []
