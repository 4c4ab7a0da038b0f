"""The UI's screens, one module per screen family; each exposes ``router`` (an APIRouter under ``/ui``) and
``ui.web.mount`` includes every module here, so adding a screen does not touch a shared file."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        router = getattr(importlib.import_module(f"{__name__}.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found
