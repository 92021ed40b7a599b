"""The HTTP face of opsgraph: GraphQL (GraphiQL at /graphql) and a health check on FastAPI,
with API keys (reader or writer role), CORS and production hardening from settings."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from strawberry.fastapi import GraphQLRouter

from opsgraph.graph.memory import DecisionMemory
from opsgraph.graph.rca import RcaError, RootCauseAnalyzer
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store

from . import evidence
from .graphql import Context, build_schema

ROLES = ("reader", "writer")


class ApiKeys:
    """API keys kept as SHA-256 hashes (mode 0600) under the data directory."""

    def __init__(self, home: Path) -> None:
        self.path = home / "api-keys.json"

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def create(self, role: str, name: str) -> str:
        """A new key; only its hash is stored, so it is shown once."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key = f"og_{secrets.token_urlsafe(32)}"
        keys = self._load()
        keys[_digest(key)] = {"role": role, "name": name, "created": datetime.now(UTC).isoformat()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(keys, handle, indent=1)
        return key

    def role(self, key: str) -> str | None:
        entry = self._load().get(_digest(key))
        return entry["role"] if entry else None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_app(
    store: Store,
    settings: Settings,
    auth: bool = True,
    production: bool = False,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    """The app around an open store; ``auth=False`` only for local exploration."""
    keys = ApiKeys(settings.home)
    memory = DecisionMemory(store)  # one per app: the embedding model loads once, on first use

    def role_of(request: Request) -> str:
        """The caller's role from its API key (header, or ``api_key`` for browser pages)."""
        if not auth:
            return "writer"
        header = request.headers.get("authorization", "")
        key = (
            header.removeprefix("Bearer ").strip()
            or request.headers.get("x-api-key", "")
            or request.query_params.get("api_key", "")
        )
        role = keys.role(key) if key else None
        if role is None:
            raise HTTPException(
                status_code=401,
                detail="missing or unknown API key: send 'Authorization: Bearer <key>' "
                "(create one with `opsgraph apikey create --role reader`)",
            )
        return role

    async def context(request: Request) -> Context:
        return Context(store=store, role=role_of(request), memory=memory)

    app = FastAPI(title="opsgraph", description="Execution intelligence for manufacturing")
    graphql = GraphQLRouter(
        build_schema(introspection=not production),
        context_getter=context,
        graphql_ide=None if production else "graphiql",
    )
    app.include_router(graphql, prefix="/graphql")
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "x-api-key", "content-type"],
        )

    @app.get("/static/" + evidence.LIBRARY, include_in_schema=False)
    def cytoscape() -> Response:
        return Response(evidence.library(), media_type="text/javascript")

    @app.get("/explore/deviation/{deviation_id:path}", response_class=HTMLResponse)
    def explore(deviation_id: str, request: Request) -> HTMLResponse:
        """The evidence graph of a deviation: its ranked causes and the paths to them."""
        role_of(request)
        try:
            result = RootCauseAnalyzer(store).analyze(deviation_id)
        except RcaError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return HTMLResponse(evidence.render(result, script_src="/static/" + evidence.LIBRARY))

    @app.get("/health")
    def health() -> dict[str, Any]:
        store.read("RETURN 1 AS ok")
        return {"status": "ok", "store": store.description}

    return app
