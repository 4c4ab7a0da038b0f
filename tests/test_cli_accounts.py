"""``ionflux token`` and ``ionflux owner`` on the server's database: a token made on the command line works
against the API, is listed without its value, and stops working once revoked."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from engine.runtime.runtime import Runtime
from tests.cli_helpers import ionflux
from tests.runtime_helpers import config


def test_a_cli_token_works_on_the_api_until_revoked(tmp_path: Path) -> None:
    made = ionflux(tmp_path, "token", "create", "ci", "--scope", "write")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ifx_") and "shown once" in made.stderr
    listed = ionflux(tmp_path, "token", "list")
    assert "ci" in listed.stdout and token not in listed.stdout
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'ionflux.db'}")
    with Runtime(cfg) as rt, TestClient(create_app(rt)) as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["scope"] == "write" and me.json()["owner"]["id"] == "local"
        token_id = client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {token}"}).json()["items"][0]["id"]
        assert ionflux(tmp_path, "token", "revoke", token_id).returncode == 0
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert ionflux(tmp_path, "token", "revoke", token_id).returncode == 1


def test_an_owner_made_on_the_cli_can_sign_in(tmp_path: Path) -> None:
    made = ionflux(
        tmp_path, "owner", "create", "Rui", "--email", "rui@example.com", "--password-stdin", stdin="rui-password-1\n"
    )
    assert made.returncode == 0, made.stderr
    assert "rui@example.com" in ionflux(tmp_path, "owner", "list").stdout
    token = ionflux(tmp_path, "token", "create", "rui", "--owner", "rui@example.com").stdout.strip()
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'ionflux.db'}")
    with Runtime(cfg) as rt, TestClient(create_app(rt)) as client:
        signed = client.post("/api/v1/login", json={"email": "rui@example.com", "password": "rui-password-1"})
        assert signed.status_code == 200
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["owner"]["email"] == "rui@example.com" and me["scope"] == "read"
    unknown = ionflux(tmp_path, "token", "create", "x", "--owner", "nobody@example.com")
    assert unknown.returncode == 1 and "owner.not_found" in unknown.stderr


def test_a_forgotten_password_is_reset_on_the_server_and_an_owner_can_be_locked_out(tmp_path: Path) -> None:
    made = ionflux(
        tmp_path, "owner", "create", "Rui", "--email", "rui@example.com", "--password-stdin", stdin="rui-password-1\n"
    )
    assert made.returncode == 0, made.stderr
    token = ionflux(tmp_path, "token", "create", "rui", "--owner", "rui@example.com").stdout.strip()
    # When the password is forgotten, the server's command line sets a new one
    reset = ionflux(tmp_path, "owner", "password", "rui@example.com", stdin="a-new-password-2\n")
    assert reset.returncode == 0 and "new password set" in reset.stderr, reset.stderr
    short = ionflux(tmp_path, "owner", "password", "rui@example.com", stdin="short\n")
    assert short.returncode == 1 and "10 characters" in short.stderr
    cfg = config(tmp_path, f"sqlite:///{tmp_path / 'ionflux.db'}")
    with Runtime(cfg) as rt, TestClient(create_app(rt)) as client:
        old = client.post("/api/v1/login", json={"email": "rui@example.com", "password": "rui-password-1"})
        new = client.post("/api/v1/login", json={"email": "rui@example.com", "password": "a-new-password-2"})
        assert (old.status_code, new.status_code) == (401, 200)
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # When the owner is locked out, no password, session or token works any more
        client.cookies.clear()
        assert ionflux(tmp_path, "owner", "lock", "rui@example.com").returncode == 0
        again = client.post("/api/v1/login", json={"email": "rui@example.com", "password": "a-new-password-2"})
        assert again.status_code == 401
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    unknown = ionflux(tmp_path, "owner", "lock", "nobody@example.com")
    assert unknown.returncode == 1 and "owner.not_found" in unknown.stderr
