"""The HTTP API, version 1 (``/api/v1``): one router per resource, one error model, one way to say who asks."""

from __future__ import annotations

from fastapi import APIRouter

from api.v1 import account


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    api.include_router(account.router)
    return api
