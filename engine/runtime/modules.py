"""The transform registry: WebAssembly modules stored by ``name@version`` with their manifest.

A manifest (YAML or JSON) says what a module is and needs::

    name: word-count            # lower case, digits, - and _
    version: 1.0.0              # semantic version; a registered version never changes
    description: Count the words of a text.
    input_schema: {type: object, properties: {text: {type: string}}, required: [text]}
    output_schema: {type: object, properties: {words: {type: integer}}}
    limits: {fuel: 100000000, memory_mb: 32}   # optional; within the operator's maxima

Registering compiles the module once (so a broken module is refused at once, not at its first run), and stores
its bytes in the database, so every worker of an installation finds it. Versions are immutable: registering the
same bytes again is a no-op; different bytes under a taken version are refused.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.dsl.metaschema import schema_problem
from engine.errors import IonfluxError
from engine.steps.call import StepFailure
from engine.steps.sandbox import Sandbox
from engine.steps.wasm import LIMIT_FIELDS, Transform
from engine.store.db import utc
from engine.store.tables import wasm_modules

SEMVER = r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?"
REF = re.compile(rf"^(?P<name>[a-z][a-z0-9_-]*)@(?P<version>{SEMVER})$")


class ModuleError(IonfluxError):
    code = "module.invalid"


class ModuleLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fuel: int | None = Field(None, ge=1)
    memory_mb: int | None = Field(None, ge=1, le=4096)
    timeout_seconds: float | None = Field(None, gt=0)
    output_bytes: int | None = Field(None, ge=1)
    log_bytes: int | None = Field(None, ge=1)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)
    version: str = Field(pattern=rf"^{SEMVER}$", max_length=64)
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] = Field(default_factory=dict)
    limits: ModuleLimits = Field(default_factory=ModuleLimits)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    name: str
    version: str
    digest: str
    size: int
    description: str
    created_at: datetime
    manifest: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def parse_manifest(data: Any, where: str = "the manifest") -> Manifest:
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(map(str, first["loc"])) or "(top level)"
        raise ModuleError(
            f"{where}: {field}: {first['msg']}",
            hint="a manifest has name, version (x.y.z), and optionally description, input_schema, output_schema, "
            "limits (docs/guides/creating_transforms.md)",
        ) from None
    for field_name in ("input_schema", "output_schema"):
        schema = getattr(manifest, field_name)
        problem = schema_problem(schema) if schema else None
        if problem is not None:
            raise ModuleError(f"{where}: {field_name} is not a valid JSON Schema: {problem.message}")
    return manifest


class ModuleRegistry:
    def __init__(self, db: sa.Engine, sandbox: Sandbox) -> None:
        self.db = db
        self.sandbox = sandbox
        self._cache: dict[str, Transform] = {}  # versions are immutable: a resolved one stays valid
        self._lock = threading.Lock()

    def register(self, wasm: bytes, manifest_data: Mapping[str, Any], now: datetime) -> tuple[ModuleInfo, bool]:
        """Store a module; -> (its record, whether it was new)."""
        manifest = parse_manifest(manifest_data)
        try:
            self.sandbox.load(wasm)  # refuse what cannot run: not wasm, not a WASI command, foreign imports
        except StepFailure as e:
            raise ModuleError(f"{manifest.ref}: {e.message}", hint=e.hint) from None
        digest = hashlib.sha256(wasm).hexdigest()
        with self.db.begin() as conn:
            existing = conn.execute(
                sa.select(wasm_modules.c.digest).where(
                    wasm_modules.c.name == manifest.name, wasm_modules.c.version == manifest.version
                )
            ).scalar()
            if existing is not None and existing != digest:
                raise ModuleError(
                    f"{manifest.ref} is already registered with other contents (sha256 {existing[:12]}…)",
                    hint="a registered version never changes: give the new build a new version",
                    code="module.exists",
                )
            if existing is None:
                conn.execute(
                    wasm_modules.insert().values(
                        name=manifest.name,
                        version=manifest.version,
                        digest=digest,
                        manifest=manifest.model_dump(exclude_none=True),
                        wasm=wasm,
                        size=len(wasm),
                        created_at=now,
                    )
                )
        info = self.get_info(manifest.ref)
        assert info is not None
        return info, existing is None

    def list(self) -> list[ModuleInfo]:
        with self.db.begin() as conn:
            rows = conn.execute(sa.select(*_INFO).order_by(wasm_modules.c.name, wasm_modules.c.created_at)).all()
        return [_info(row) for row in rows]

    def get_info(self, ref: str) -> ModuleInfo | None:
        name, version = _split(ref)
        with self.db.begin() as conn:
            row = conn.execute(
                sa.select(*_INFO).where(wasm_modules.c.name == name, wasm_modules.c.version == version)
            ).first()
        return _info(row) if row is not None else None

    def resolve(self, ref: str) -> Transform:
        """The transform for ``name@version`` (the executor's resolver); a step failure when unknown."""
        with self._lock:
            cached = self._cache.get(ref)
        if cached is not None:
            return cached
        try:
            name, version = _split(ref)
        except ModuleError as e:
            raise StepFailure("module.not_found", e.message, hint=e.hint) from None
        with self.db.begin() as conn:
            row = conn.execute(
                sa.select(wasm_modules.c.wasm, wasm_modules.c.manifest).where(
                    wasm_modules.c.name == name, wasm_modules.c.version == version
                )
            ).first()
        if row is None:
            raise StepFailure(
                "module.not_found",
                f"no transform {ref} is registered",
                hint="register it: ionflux transform register FILE.wasm --manifest FILE.yaml (ionflux transform list)",
            )
        manifest = row.manifest
        limits = {k: v for k, v in (manifest.get("limits") or {}).items() if k in LIMIT_FIELDS}
        transform = Transform(
            ref, bytes(row.wasm), manifest.get("input_schema") or {}, manifest.get("output_schema") or {}, limits
        )
        with self._lock:
            self._cache[ref] = transform
        return transform


_INFO = (
    wasm_modules.c.name,
    wasm_modules.c.version,
    wasm_modules.c.digest,
    wasm_modules.c.size,
    wasm_modules.c.created_at,
    wasm_modules.c.manifest,
)


def _info(row: Any) -> ModuleInfo:
    created = utc(row.created_at)
    assert created is not None
    return ModuleInfo(
        row.name, row.version, row.digest, row.size, row.manifest.get("description", ""), created, row.manifest
    )


def _split(ref: str) -> tuple[str, str]:
    match = REF.match(ref)
    if match is None:
        raise ModuleError(
            f"{ref!r} is not a module reference",
            hint="write name@version with a semantic version, e.g. word-count@1.0.0",
        )
    return match["name"], match["version"]
