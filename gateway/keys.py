"""``/api/keys``: admin keys create, list and revoke scoped API keys; ``/api/whoami``: any key
reads its own scope.

The same operations as ``livecut keys``; the secret is in the create response only.
"""
from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from gateway.api import MsgspecResponse
from gateway.openapi import json_schema
from gateway.auth import require
from gateway.errors import bounded_body, decoded_body, not_found
from records.key_store import MAX_NAME, KeyStore, Scope
from records.store import Store

MAX_BODY = 4096


class WhoAmI(msgspec.Struct):
    """The presented key's own id and scope (what the web console may show)."""

    key_id: str
    scope: Scope


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    scope: Scope
    name: Annotated[str, msgspec.Meta(max_length=MAX_NAME)] = ""


def build_key_router(store: Store) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["keys"])
    admin = [Depends(require("admin"))]
    keys = KeyStore(store.pool)

    @router.post(
        "/keys",
        status_code=201,
        dependencies=admin,
        response_class=MsgspecResponse,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": json_schema(KeyCreate, closed=True)}}}
        },
    )
    async def create_key(request: Request) -> Response:
        create = decoded_body(bounded_body(await request.body(), MAX_BODY), KeyCreate)
        created = await keys.create(create.scope, create.name)
        return MsgspecResponse(msgspec.to_builtins(created), status_code=201)

    @router.get("/keys", dependencies=admin, response_class=MsgspecResponse)
    async def list_keys() -> Response:
        return MsgspecResponse({"items": msgspec.to_builtins(await keys.list())})

    @router.delete("/keys/{key_id}", dependencies=admin, response_class=MsgspecResponse)
    async def revoke_key(key_id: str, request: Request) -> Response:
        revoked = await keys.revoke(key_id)
        if revoked is None:
            raise not_found(f"no API key {key_id!r}")
        request.app.state.auth.forget()  # at once on this gateway; others within their cache time
        return MsgspecResponse(msgspec.to_builtins(revoked))

    @router.get(
        "/whoami",
        dependencies=[Depends(require("read"))],
        response_class=MsgspecResponse,
        responses={200: {"description": "the key's id and scope",
                         "content": {"application/json": {"schema": json_schema(WhoAmI)}}}},
    )
    async def whoami(request: Request) -> Response:
        """Any valid key: its own id and scope, so a client can tell what it may do (the web
        console hides what the scope does not allow)."""
        principal = request.state.principal
        return MsgspecResponse(WhoAmI(principal.key_id, principal.scope))

    return router
