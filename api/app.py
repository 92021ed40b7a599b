"""The HTTP face of opsgraph: GraphQL (GraphiQL at /graphql) and a health check on FastAPI,
with API keys (reader or writer role), CORS and production hardening from settings."""

from __future__ import annotations

import asyncio
import atexit
import gc
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import Schema
from strawberry.asgi import GraphQL

from opsgraph.graph import queries
from opsgraph.graph.memory import DecisionMemory
from opsgraph.graph.rca import RcaError, RootCauseAnalyzer
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import AsyncStore, Store, StoreError
from opsgraph.graph.workflows import Workflow, WorkflowEngine, load_workflows
from opsgraph.ingest.live import LiveIngest
from opsgraph.ingest.runner import IngestReport, IngestRunner, UnknownFormat

from . import evidence
from .graphql import Context, build_schema

log = logging.getLogger(__name__)
ROLES = ("reader", "writer")
MAX_WEBHOOK_BYTES = 20 * 1024 * 1024
ID_LENGTH = 12  # characters of a key's hash that name it


class ApiKeys:
    """API keys kept as SHA-256 hashes (mode 0600) under the data directory; a key is named
    by the first characters of its hash (its ID), which is safe to show and to type."""

    USE_EVERY = 60.0  # seconds between two records of a key's last use

    def __init__(self, home: Path) -> None:
        self.path = home / "api-keys.json"
        self.usage_path = home / "api-keys-used.json"
        self._read: tuple[tuple[int, int, int] | None, dict[str, dict[str, str]]] = (None, {})
        self._used: dict[str, float] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        """The keys as last written, read again only when the file changed: every request
        asks, and a key made or revoked meanwhile by `opsgraph apikey` must count at once."""
        try:
            stat = self.path.stat()
        except OSError:
            return {}
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._read[0] != version:
            try:
                self._read = (version, json.loads(self.path.read_text()))
            except (OSError, ValueError):
                return {}
        return self._read[1]

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        """Replace the file whole, so a server reading it never sees half of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
        os.replace(temporary, path)

    def create(self, role: str, name: str) -> str:
        """A new key; only its hash is stored, so it is shown once."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        key = _new_key()
        keys = dict(self._load())
        keys[_digest(key)] = {"role": role, "name": name, "created": datetime.now(UTC).isoformat()}
        self._write(self.path, keys)
        return key

    def role(self, key: str) -> str | None:
        digest = _digest(key)
        entry = self._load().get(digest)
        if entry is None:
            return None
        now = time.time()
        if now - self._used.get(digest, 0.0) >= self.USE_EVERY:
            self._used[digest] = now
            self._record_use(digest, now)
        return entry["role"]

    def _record_use(self, digest: str, now: float) -> None:
        """Last use, in a file of its own: rewriting the keys file on requests would race
        with `apikey revoke`. Losing a timestamp to a race between workers is harmless."""
        used = self._usage()
        used[digest[:ID_LENGTH]] = datetime.fromtimestamp(now, UTC).isoformat()
        try:
            self._write(self.usage_path, used)
        except OSError as error:
            log.warning("could not record an API key's last use in %s: %s", self.usage_path, error)

    def _usage(self) -> dict[str, str]:
        """When each key (by ID) was last used; nothing yet if the file is missing or torn."""
        try:
            return json.loads(self.usage_path.read_text())
        except (OSError, ValueError):
            return {}

    def listing(self) -> list[dict[str, str]]:
        """Every key without its secret: ID, name, role, created, last used."""
        used = self._usage()
        return [
            {
                "id": digest[:ID_LENGTH],
                "name": entry.get("name", ""),
                "role": entry["role"],
                "created": entry.get("created", ""),
                "last_used": used.get(digest[:ID_LENGTH], ""),
            }
            for digest, entry in sorted(self._load().items(), key=lambda i: i[1].get("created", ""))
        ]

    def _find(self, which: str) -> str:
        """The hash of the key with this ID (or ID prefix) or name; exactly one must match."""
        keys = self._load()
        found = [d for d in keys if d.startswith(which.lower())] if len(which) >= 6 else []
        found = found or [d for d, entry in keys.items() if entry.get("name") == which]
        if not found:
            raise KeyError(f"no API key with ID or name {which!r} (see `opsgraph apikey list`)")
        if len(found) > 1:
            ids = ", ".join(d[:ID_LENGTH] for d in found)
            raise KeyError(f"{which!r} names {len(found)} keys ({ids}): give one ID")
        return found[0]

    def revoke(self, which: str) -> dict[str, str]:
        """Remove a key; a running server refuses it from its next request on."""
        digest = self._find(which)
        keys = dict(self._load())
        entry = keys.pop(digest)
        self._write(self.path, keys)
        return {"id": digest[:ID_LENGTH], **entry}

    def rotate(self, which: str) -> tuple[str, dict[str, str]]:
        """A new key with the old one's name and role, the old one revoked in the same write
        (no moment with both or neither)."""
        digest = self._find(which)
        keys = dict(self._load())
        entry = keys.pop(digest)
        key = _new_key()
        keys[_digest(key)] = {**entry, "created": datetime.now(UTC).isoformat()}
        self._write(self.path, keys)
        return key, {"id": _digest(key)[:ID_LENGTH], "replaces": digest[:ID_LENGTH], **entry}


class RedactKeys(logging.Filter):
    """Masks ``api_key=…`` in uvicorn's access lines: a browser page may carry its key in
    the address, and access logs are kept and shipped where keys must not go."""

    PATTERN = re.compile(r"(api_key=)[^&\s]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def _hide(message: str, path: Path, name: str) -> str:
    """A message about a webhook body, naming the file as the caller sent it: the inbox's
    path on this server is nobody else's business."""
    return message.replace(str(path), name)


def _prune(inbox: Path, days: float) -> None:
    """Remove kept webhook bodies (those with rejected records) older than ``days``, and
    never one younger than an hour: that may be another request's, not yet loaded."""
    cutoff = time.time() - max(days * 86400, 3600)
    for body in inbox.iterdir():
        try:
            if body.stat().st_mtime < cutoff:
                body.unlink()
        except OSError:  # another worker removed it first
            continue


def _json(content: dict[str, Any], status: int) -> Response:
    return Response(orjson.dumps(content), media_type="application/json", status_code=status)


def _new_key() -> str:
    return f"og_{secrets.token_urlsafe(32)}"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_app(
    store: Store,
    settings: Settings,
    auth: bool = True,
    production: bool = False,
    cors_origins: list[str] | None = None,
    workflows: Sequence[Workflow] = (),
) -> FastAPI:
    """The app around an open store; ``auth=False`` only for local exploration. With
    ``workflows``, every deviation the webhook's records produce goes through the rules."""
    keys = ApiKeys(settings.home)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in access.filters):
        access.addFilter(RedactKeys())
    memory = DecisionMemory(store)  # one per app: the embedding model loads once, on first use

    def role_of(request: HTTPConnection) -> str:
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

    runner = IngestRunner(store, settings.home / "ingest", scope=settings.uri or "embedded")
    on_commit = None
    if workflows:
        # Rules attach root causes (~0.1 s a deviation): they run on a thread of their own,
        # in commit order, so a burst of deviations never holds up the next group commit.
        engine = WorkflowEngine(store, workflows, settings.home, memory)
        rules = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workflows")

        def on_commit(report: IngestReport) -> None:
            rules.submit(engine.run, report.new_deviations).add_done_callback(_log_failure)

    live = LiveIngest(runner, on_commit=on_commit)
    inbox = settings.home / "inbox"
    pruned = [-float("inf")]  # when the inbox was last pruned (monotonic seconds)

    async def context(request: HTTPConnection) -> Context:  # HTTP requests and websockets
        return Context(
            store=store,
            role=role_of(request),
            memory=memory,
            changes=live.changes,
            reads=getattr(request.app.state, "reads", None),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """The resolvers' reads run on the serving event loop through the async driver,
        which is bound to the loop it is made on: made when the server starts (without a
        lifespan, e.g. an un-entered TestClient, they run on threads instead)."""
        app.state.reads = AsyncStore(store) if store.address is not None else None
        try:
            yield
        finally:
            if app.state.reads is not None:
                await app.state.reads.close()

    app = FastAPI(
        title="opsgraph",
        description="Execution intelligence for manufacturing",
        lifespan=lifespan,
    )
    graphql = GraphQLView(
        build_schema(production=production),
        context,
        graphql_ide=None if production else "graphiql",
    )
    app.add_route("/graphql", graphql, methods=["GET", "POST"])
    app.router.add_websocket_route("/graphql", graphql)
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

    @app.post("/ingest")
    async def ingest(request: Request, filename: str, format: str | None = None) -> Response:  # noqa: A002
        """A webhook for the same record formats as `opsgraph ingest` (an MES event, a
        SafetyCulture action update…): the body is kept in the inbox and loaded together with
        other bodies arriving at the same moment (one commit for the group); answered once
        committed: 200 with the report, 422 with the reasons when records were rejected."""
        if role_of(request) != "writer":
            raise HTTPException(status_code=403, detail="a writer key is needed to ingest")
        name = Path(filename).name
        if not name or name.startswith("."):
            raise HTTPException(status_code=400, detail="filename: give the export's file name")
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            raise HTTPException(status_code=413, detail="payload over 20 MB: use opsgraph ingest")
        inbox.mkdir(parents=True, exist_ok=True)
        if time.monotonic() - pruned[0] > 3600:  # not a directory scan on every request
            pruned[0] = time.monotonic()
            _prune(inbox, settings.inbox_days)
        path = inbox / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}-{name}"
        path.write_bytes(body)
        try:
            stream = runner.file_stream(path, format)
        except UnknownFormat as error:
            path.unlink()
            raise HTTPException(status_code=422, detail=_hide(str(error), path, name)) from None
        try:
            outcome = await asyncio.wrap_future(live.submit([stream]))
        except StoreError as error:  # nothing of this body was committed: the sender retries
            path.unlink(missing_ok=True)
            raise HTTPException(status_code=503, detail=f"not loaded, retry: {error}") from None
        if not outcome.rejected:  # committed whole (parked records keep their own copy)
            path.unlink(missing_ok=True)
        run = outcome.run
        content = {
            "run_id": run.run_id if run else None,
            "records": sum(s.records for s in outcome.sources),
            "rejected": outcome.rejected,
            "sources": [{**s.as_dict(), "path": name} for s in outcome.sources],
            # the deviation rules run on the whole commit this body went into
            "commit_new_deviations": run.new_deviations if run else [],
            "rejections": [
                {"position": r["position"], "reason": _hide(r["reason"], path, name)}
                for r in outcome.rejections
            ],
        }
        return Response(
            json.dumps(content, default=str),
            media_type="application/json",
            status_code=422 if outcome.rejected else 200,
        )

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the process answers. Whether it can serve is /ready's question, so a
        store outage never gets the API restarted by its supervisor."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> Response:
        """Readiness: the store answers a query. 503 with what is down, for a load balancer
        or monitoring; in production without the store's address or the driver's words."""
        started = time.perf_counter()
        try:
            store.read(queries.PING)
        except StoreError as error:
            log.warning("/ready: the store did not answer: %s", error)
            detail = {"reachable": False}
            if not production:
                detail |= {"store": store.description, "error": str(error)}
            return _json({"status": "unavailable", "store": detail}, 503)
        detail = {"reachable": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
        if not production:
            detail["store"] = store.description
        return _json({"status": "ready", "store": detail}, 200)

    return app


class GraphQLView(GraphQL):
    """strawberry's ASGI view routed straight from the app instead of through FastAPI's
    ``GraphQLRouter``, whose dependency solving and sub-application cost ~15 % of a deep
    query's CPU (A/B at 16 concurrent clients: 218-279 -> 254-278 requests/s). The context
    (and with it the caller's key) is made before a websocket is accepted, so an unknown key
    is refused at the handshake; over HTTP its 401 reaches FastAPI's error handler."""

    def __init__(
        self,
        schema: Schema,
        context_of: Callable[[HTTPConnection], Awaitable[Context]],
        graphql_ide: Any,
    ) -> None:
        super().__init__(schema, graphql_ide=graphql_ide)
        self.context_of = context_of

    async def get_context(self, request: Any, response: Any) -> Context:
        return await self.context_of(request)

    def encode_json(self, data: object) -> str:
        """orjson: ten deviations' answer (27 KB) in 18 µs where the json module took 225.
        Text, not bytes: strawberry sends bytes over a websocket as binary frames."""
        return orjson.dumps(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        return orjson.loads(data)  # its error is a json.JSONDecodeError: a 400 as before

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        websocket = WebSocket(scope, receive=receive, send=send)
        try:
            context = await self.context_of(websocket)
        except HTTPException:
            await websocket.close(code=1008)  # before accepting: a 403 at the handshake
            return
        await self.run(websocket, context=context)


def _log_failure(done: Future) -> None:
    if done.exception() is not None:
        log.error("workflow rules failed", exc_info=done.exception())


def settle_heap() -> None:
    """Called once the app is built, before serving. A GraphQL response makes thousands of
    short-lived objects, and Python's collector also walks the ~150,000 long-lived ones made
    at startup (schema, driver, modules) each time it looks further than the youngest
    generation: freezing those and collecting the young less often raised the deep query's
    rate at 16 concurrent requests by ~15-25 % (in process, A/B; garbage cycles are still
    collected, just in bigger, rarer steps)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


SERVE_OPTIONS = "OPSGRAPH_SERVE"  # JSON: auth, production, cors_origins, workflows (a path)


def app_from_environment() -> FastAPI:
    """The app for one of several uvicorn worker processes (``opsgraph serve --workers``):
    the store from ``OPSGRAPH_*``, the serve options from ``OPSGRAPH_SERVE``."""
    settings = Settings.from_env()
    options = json.loads(os.environ.get(SERVE_OPTIONS) or "{}")
    workflows = load_workflows(Path(options["workflows"])) if options.get("workflows") else []
    store = Store.open(settings)
    app = create_app(
        store,
        settings,
        auth=options.get("auth", True),
        production=options.get("production", False),
        cors_origins=options.get("cors_origins") or [],
        workflows=workflows,
    )
    atexit.register(store.close)  # the worker process's one connection pool
    settle_heap()
    return app


class BackgroundServer:
    """The app served by uvicorn on a free loopback port in a thread, for embedding opsgraph
    in another program (notebooks, tests, the benchmarks): ``with BackgroundServer(app) as
    server: httpx.get(server.url + "/health")``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1") -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind((host, 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
