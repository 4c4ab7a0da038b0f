"""A minimal secret store: values encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256) with a key from settings.

Values are decrypted only inside a worker, for the step that references them, and are scrubbed from previews,
logs and error messages (engine.runtime.payloads.scrub). Losing the key loses the secrets: back it up.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from engine.errors import IonfluxError
from engine.store.tables import secrets

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class SecretError(IonfluxError):
    code = "secret.invalid"


def new_key() -> bytes:
    return Fernet.generate_key()


class SecretStore:
    def __init__(self, db: sa.Engine, key: bytes) -> None:
        self._db = db
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise SecretError(
                "the secret key is not a valid Fernet key",
                hint="IONFLUX_SECRET_KEY must be 32 url-safe base64-encoded bytes; make one with "
                "`ionflux secrets new-key`",
            ) from None

    def set(self, name: str, value: str) -> None:
        if not NAME.fullmatch(name):
            raise SecretError(
                f"{name!r} is not a valid secret name", hint="use letters, digits and _, starting with a letter"
            )
        token = self._fernet.encrypt(value.encode())
        now = datetime.now(UTC)
        with self._db.begin() as conn:
            updated = conn.execute(
                secrets.update().where(secrets.c.name == name).values(ciphertext=token, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(secrets.insert().values(name=name, ciphertext=token, created_at=now, updated_at=now))

    def delete(self, name: str) -> bool:
        with self._db.begin() as conn:
            return bool(conn.execute(secrets.delete().where(secrets.c.name == name)).rowcount)

    def names(self) -> list[str]:
        with self._db.begin() as conn:
            return list(conn.execute(sa.select(secrets.c.name).order_by(secrets.c.name)).scalars())

    def resolve(self, names: tuple[str, ...] | list[str]) -> dict[str, str]:
        """The values of the named secrets that exist (a missing one fails only the step that reads it)."""
        if not names:
            return {}
        with self._db.begin() as conn:
            rows = conn.execute(sa.select(secrets.c.name, secrets.c.ciphertext).where(secrets.c.name.in_(names)))
            out = {}
            for name, token in rows:
                try:
                    out[name] = self._fernet.decrypt(bytes(token)).decode()
                except InvalidToken:
                    raise SecretError(
                        f"secret {name!r} cannot be decrypted with this key",
                        hint="the IONFLUX_SECRET_KEY changed since it was stored; restore the old key or set it again",
                    ) from None
            return out
