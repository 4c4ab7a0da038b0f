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
from engine.store.tables import LOCAL_OWNER, secrets

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"  # as JSON Schema (the API) and HTML forms (the UI) declare it
NAME = re.compile(NAME_PATTERN)
NAME_RULE = "use letters, digits and _, starting with a letter or _ (64 characters at most)"
MAX_VALUE = 64 * 1024  # characters: a token, a key, a certificate; not a file


class SecretError(IonfluxError):
    code = "secret.invalid"


def new_key() -> bytes:
    return Fernet.generate_key()


def check_name(name: str) -> None:
    """Raises :class:`SecretError` saying how to fix ``name`` unless it may name a secret."""
    if not NAME.fullmatch(name):
        raise SecretError(f"secret name {name!r} is not allowed", hint=NAME_RULE)


def check_value(value: str) -> None:
    """Raises :class:`SecretError` unless ``value`` may be stored (the API and the UI refuse the same values)."""
    if not value:
        raise SecretError("the secret's value is empty", hint="enter the value to store")
    if len(value) > MAX_VALUE:
        raise SecretError(
            f"the secret's value is {len(value):,} characters long",
            hint=f"a secret holds at most {MAX_VALUE:,} characters",
        )


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

    # every method takes the owner whose secrets it reads or writes: a name is unique per owner, never shared

    def set(self, name: str, value: str, owner: str = LOCAL_OWNER) -> None:
        check_name(name)
        token = self._fernet.encrypt(value.encode())
        now = datetime.now(UTC)
        with self._db.begin() as conn:
            updated = conn.execute(
                secrets.update()
                .where(secrets.c.owner_id == owner, secrets.c.name == name)
                .values(ciphertext=token, updated_at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    secrets.insert().values(owner_id=owner, name=name, ciphertext=token, created_at=now, updated_at=now)
                )

    def delete(self, name: str, owner: str = LOCAL_OWNER) -> bool:
        with self._db.begin() as conn:
            gone = conn.execute(secrets.delete().where(secrets.c.owner_id == owner, secrets.c.name == name))
            return bool(gone.rowcount)

    def names(self, owner: str = LOCAL_OWNER) -> list[str]:
        with self._db.begin() as conn:
            query = sa.select(secrets.c.name).where(secrets.c.owner_id == owner).order_by(secrets.c.name)
            return list(conn.execute(query).scalars())

    def listing(self, owner: str = LOCAL_OWNER) -> list[tuple[str, datetime, datetime]]:
        """(name, created, updated) of each secret: what may be shown (values never are)."""
        with self._db.begin() as conn:
            query = (
                sa.select(secrets.c.name, secrets.c.created_at, secrets.c.updated_at)
                .where(secrets.c.owner_id == owner)
                .order_by(secrets.c.name)
            )
            return [(n, c, u) for n, c, u in conn.execute(query)]

    def resolve(self, names: tuple[str, ...] | list[str], owner: str = LOCAL_OWNER) -> dict[str, str]:
        """The values of the named secrets that exist (a missing one fails only the step that reads it)."""
        if not names:
            return {}
        with self._db.begin() as conn:
            rows = conn.execute(
                sa.select(secrets.c.name, secrets.c.ciphertext).where(
                    secrets.c.owner_id == owner, secrets.c.name.in_(names)
                )
            )
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
