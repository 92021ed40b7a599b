"""The `opsgraph` command line: parse, call a service in graph/ or ingest/, print."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from opsgraph.api import evidence
from opsgraph.api.app import SERVE_OPTIONS, ApiKeys, create_app, settle_heap
from opsgraph.graph import identity, queries
from opsgraph.graph.analyst import GRASS, SAVED_QUERIES, saved_queries
from opsgraph.graph.constraints import apply_schema
from opsgraph.graph.embedded import (
    EmbeddedServer,
    EmbeddedServerError,
    find_runtime,
    install_command,
)
from opsgraph.graph.identity import Alias, AliasError, Aliases
from opsgraph.graph.memory import DecisionMemory, DecisionMemoryError, Filters
from opsgraph.graph.rca import RcaError, RcaResult, RootCauseAnalyzer
from opsgraph.graph.risk import RiskModel
from opsgraph.graph.settings import Settings
from opsgraph.graph.stats import GraphStats, deviation_summary, graph_stats
from opsgraph.graph.store import Store, StoreError
from opsgraph.graph.workflows import (
    Workflow,
    WorkflowEngine,
    WorkflowError,
    WorkflowReport,
    load_workflows,
)
from opsgraph.ingest.demo import VARIANTS, generate
from opsgraph.ingest.mqtt import Broker, MqttError, MqttIngest
from opsgraph.ingest.parking import Parked, ParkingLot
from opsgraph.ingest.runner import (
    FORMATS,
    IngestReport,
    IngestRunner,
    SourceReport,
    UnknownFormat,
)
from opsgraph.ingest.tables import load_mapping
from opsgraph.schema import SchemaError, node_spec

app = typer.Typer(
    help="opsgraph: ERP, MES and connected-worker data in one operational graph.\n\n"
    "With no OPSGRAPH_URI the graph lives in an embedded ArcadeDB under OPSGRAPH_HOME "
    "(default ~/.opsgraph), started on demand; set OPSGRAPH_URI to use a Neo4j server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the embedded ArcadeDB server.", no_args_is_help=True)
schema_app = typer.Typer(help="Constraints and indexes from the graph model.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(schema_app, name="schema")

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def configure(
    ctx: typer.Context,
    uri: Annotated[
        str | None, typer.Option(help="Neo4j URI (env OPSGRAPH_URI); omit for embedded.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Neo4j user (env OPSGRAPH_USER).")] = None,
    password: Annotated[
        str | None, typer.Option(help="Neo4j password (env OPSGRAPH_PASSWORD).")
    ] = None,
    database: Annotated[
        str | None, typer.Option(help="Database name (env OPSGRAPH_DATABASE).")
    ] = None,
    home: Annotated[Path | None, typer.Option(help="Data directory (env OPSGRAPH_HOME).")] = None,
) -> None:
    ctx.obj = Settings.from_env(uri=uri, user=user, password=password, database=database, home=home)


def _listing(
    rows: list[dict[str, Any]],
    as_json: bool,
    what: str,
    columns: dict[str, Callable[[dict[str, Any]], str]],
) -> None:
    """Rows as JSON as they are, or as a table titled with their count (heading -> cell)."""
    if as_json:
        _emit(rows)
        return
    table = Table(title=f"{len(rows)} {what}")
    for heading in columns:
        table.add_column(heading)
    for row in rows:
        table.add_row(*(cell(row) for cell in columns.values()))
    console.print(table)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _open(ctx: typer.Context, as_json: bool) -> Store:
    settings: Settings = ctx.obj
    if settings.embedded and not as_json:
        with console.status("Starting the embedded store…"):
            return Store.open(settings)
    return Store.open(settings)


# -- db ---------------------------------------------------------------------------------------


@db_app.command("start")
def db_start(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Start the embedded server (does nothing if it already runs) and wait until it answers."""
    server = _embedded(ctx)
    with console.status("Starting ArcadeDB…"):
        state = server.start()
    if as_json:
        _emit({**asdict(state), "bolt_uri": state.bolt_uri, "studio_url": state.studio_url})
        return
    console.print(
        f"[green]running[/] pid {state.pid}, Bolt {state.bolt_uri}, database {state.database}"
    )
    console.print(f"on {state.package}")
    if state.studio is not False:
        console.print(f"Studio {state.studio_url} (user root, password in {server.password_file})")
    else:
        console.print("no Studio in this package (see `opsgraph studio`)")


@db_app.command("stop")
def db_stop(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Stop the embedded server cleanly; data stays on disk."""
    stopped = _embedded(ctx).stop()
    if as_json:
        _emit({"stopped": stopped})
    else:
        console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Say whether the embedded server runs, where, on which ArcadeDB package, and how to
    reach it."""
    server = _embedded(ctx)
    state = server.status()
    package = state.package if state and state.package else _package_label(server)
    if as_json:
        _emit(
            {
                "running": state is not None,
                **(asdict(state) if state else {}),
                "package": package,
                "home": str(server.root_path),
            }
        )
        return
    if state is None:
        console.print(f"not running (data directory {server.root_path})")
        console.print(f"would start on {package}")
    else:
        studio = f"Studio {state.studio_url}" if state.studio is not False else "no Studio"
        console.print(f"[green]running[/] pid {state.pid}, Bolt {state.bolt_uri}, {studio}")
        console.print(f"package {package}")
        console.print(f"data {state.root_path}, log {server.log_file}")


def _package_label(server: EmbeddedServer) -> str:
    """The package a start would use, or why none can be (status must not fail on that)."""
    try:
        return find_runtime(server.settings.store_package).label
    except EmbeddedServerError as error:
        return f"none usable: {error}"


@app.command("studio")
def studio(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Start the embedded store if needed and show how to open its Studio.

    Studio is the analyst's Browser in embedded mode; the saved queries run there too.
    arcadedb-embedded (the final release) ships no Studio: then say so, what to install,
    and where the saved queries can run instead; exit status 1.
    """
    server = _embedded(ctx)
    state = server.start()
    has_studio = state.studio
    if has_studio is None:  # a server started before opsgraph recorded it: ask its jars
        has_studio = find_runtime(server.settings.store_package).has_studio
    info = {
        "url": state.studio_url if has_studio else None,
        "studio": has_studio,
        "package": state.package or _package_label(server),
        "bolt_uri": state.bolt_uri,
        "user": "root",
        "password_file": str(server.password_file),
        "database": server.database,
        "saved_queries": str(SAVED_QUERIES),
        "style_sheet": str(GRASS),
    }
    missing = (
        None
        if has_studio
        else (
            f"Studio is not available: the store runs on {info['package']}, which ships the "
            "server and Bolt jars but not the Studio web UI (arcadedb-studio-*.jar). For "
            f"Studio install the pre-release package with `{install_command('arcadedb-jvm')}` ("
            "opsgraph prefers it when both are installed; OPSGRAPH_STORE_PACKAGE chooses), then "
            "`opsgraph db stop` so the next command restarts the store on it."
        )
    )
    if as_json:
        _emit({**info, "missing": missing} if missing else info)
        if missing:
            raise typer.Exit(1)
        return
    if missing:
        err_console.print(f"[red]error:[/] {missing}")
        console.print(
            f"Meanwhile the saved queries run over Bolt ({state.bolt_uri}, user root, password "
            f"in {server.password_file}, database '{server.database}') in any Cypher client, "
            "e.g. Neo4j Browser or cypher-shell:"
        )
    else:
        console.print(
            f"Studio: [bold]{state.studio_url}[/]  (user root, password in {server.password_file})"
        )
        console.print(
            f"Choose database '{server.database}', query language Cypher, and paste a saved query:"
        )
    for query in saved_queries():
        params = f"  (parameters: {', '.join(query.params)})" if query.params else ""
        console.print(f"  - {query.name}{params}")
    console.print(f"Saved queries: {SAVED_QUERIES}\nNeo4j Browser style: {GRASS}")
    if missing:
        raise typer.Exit(1)


def _embedded(ctx: typer.Context) -> EmbeddedServer:
    settings: Settings = ctx.obj
    if not settings.embedded:
        raise EmbeddedServerError(
            f"OPSGRAPH_URI is set ({settings.uri}): the embedded server is not in use; "
            "manage that Neo4j with its own tools"
        )
    return EmbeddedServer(settings)


# -- schema and stats ---------------------------------------------------------------------------


@schema_app.command("apply")
def schema_apply(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Install the model's uniqueness constraints and indexes (safe to run again)."""
    with _open(ctx, as_json) as store:
        statements = apply_schema(store)
    unique = sum(1 for s in statements if s.kind == "unique")
    if as_json:
        _emit({"constraints": unique, "indexes": len(statements) - unique})
    else:
        console.print(
            f"{unique} uniqueness constraints and {len(statements) - unique} indexes in place"
        )


@app.command("stats")
def stats(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Count nodes by label and relationships by type."""
    with _open(ctx, as_json) as store:
        result = graph_stats(store)
    if as_json:
        _emit(result.as_dict())
    else:
        _print_stats(result)


def _print_stats(result: GraphStats) -> None:
    table = Table(title=f"{result.total_nodes} nodes, {result.total_relationships} relationships")
    table.add_column("label / type")
    table.add_column("count", justify="right")
    table.add_column("unresolved", justify="right")
    for label, count in result.nodes.items():
        stubs = result.unresolved.get(label)
        table.add_row(f"({label})", str(count), str(stubs) if stubs else "")
    for rel_type, count in result.relationships.items():
        table.add_row(f"[:{rel_type}]", str(count), "")
    console.print(table)
    if result.unresolved:
        console.print(
            "[dim]unresolved: only other records name them (no master record, no alias yet); "
            "opsgraph aliases suggest lists likely duplicates[/]"
        )


# -- ingest -------------------------------------------------------------------------------------


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or directories to load.")
    ] = None,
    format_name: Annotated[
        str | None, typer.Option("--format", help=f"Skip detection: {', '.join(FORMATS)}.")
    ] = None,
    full: Annotated[
        bool, typer.Option(help="Reprocess files unchanged since the last run.")
    ] = False,
    dead_letters: Annotated[
        Path | None, typer.Option(help="Dead-letter file (JSON lines); default under home.")
    ] = None,
    aliases: Annotated[
        Path | None,
        typer.Option(
            help="TOML alias map (other systems' IDs -> business keys), stored in the graph "
            "so that every later run applies it too (see opsgraph aliases)."
        ),
    ] = None,
    mapping: Annotated[
        list[Path] | None, typer.Option(help="TOML column mapping for another ERP/MES export.")
    ] = None,
    deviation_rules: Annotated[
        bool, typer.Option("--rules/--no-rules", help="Run the deviation rules after loading.")
    ] = True,
    watch: Annotated[
        bool, typer.Option(help="Keep watching the folder and load files as they land.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 2.0,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="Subscribe to a broker instead of reading files: mqtt://user@host:1883 "
            "(password in the URL or OPSGRAPH_MQTT_PASSWORD; mqtts:// for TLS)."
        ),
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(help="Topic filter to subscribe to (repeatable), e.g. 'acme/dresden/#'."),
    ] = None,
    client_id: Annotated[
        str, typer.Option(help="MQTT client id: keep it stable so the broker keeps the session.")
    ] = "opsgraph-ingest",
    workflows: Annotated[
        Path | None, typer.Option(help="Workflows file: run the rules on the new deviations.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 5000,
    pending: Annotated[
        bool, typer.Option(help="List the records waiting for an entity they name, and exit.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="One report row per file, not per format.")
    ] = False,
    retry_dead_letters: Annotated[
        bool,
        typer.Option(
            help="Read again every file and webhook body that rejected records came from (after "
            "a fix: --timezone, an alias, a mapping); PATHS, if given, are the dead-letter files "
            "to replay (default: all of this home's)."
        ),
    ] = False,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="Read timestamps that carry no zone in this IANA zone (e.g. Europe/Berlin); "
            "without it they are rejected. MTConnect and SAP times are UTC by their specs."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Load source exports into the graph, then detect deviations.

    Formats are recognised from the files: SAP S/4HANA OData v2 JSON (production orders,
    operations, confirmations, material documents), B2MML production performance, MTConnect
    streams, SafetyCulture inspections and feeds, and CSV / JSON-lines tables (machine states,
    alarms, process readings, quality checks, shift rosters, skills, notes, decision logs).
    Directories are read recursively. Exits with status 3 when records were rejected; each
    one is in the dead-letter file with its source, position, reason and the raw record.
    A record naming an entity not loaded yet (a confirmation before its order, an inspection
    item before its inspection) is parked instead and tried again by every later run, file,
    webhook or MQTT; --pending lists what waits and why.

    With --mqtt, subscribes to a plant's Unified Namespace instead (ISA-95 topics
    enterprise/site/area/line/machine/tag with JSON payloads, and Sparkplug B spBv1.0/...):
    QoS 1, each message acknowledged once its records are committed; runs until Ctrl-C.
    """
    settings: Settings = ctx.obj
    if pending:
        _print_pending(ParkingLot(settings.home / "ingest").read(), as_json)
        return
    rules = _rules(workflows) if workflows else []
    zone = _zone(timezone)
    if mqtt is not None:
        if paths:
            raise typer.BadParameter("give either files or --mqtt, not both")
        _ingest_mqtt(
            ctx, settings, mqtt, topic or [], client_id, _alias_file(aliases), rules, as_json,
            zone,
        )  # fmt: skip
        return
    if not paths and not retry_dead_letters:
        raise typer.BadParameter("name files or directories to load (or --mqtt URL)")
    with (
        _open(ctx, as_json) as store,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed} records"),
            console=err_console,
            disable=as_json,
            transient=True,
        ) as progress,
    ):
        tasks: dict[str, Any] = {}

        def on_record(path: str, count: int) -> None:
            if path not in tasks:
                tasks[path] = progress.add_task(Path(path).name)
            progress.update(tasks[path], completed=count)

        runner = IngestRunner(
            store,
            settings.home / "ingest",
            scope=settings.uri or "embedded",
            batch_size=batch_size,
            on_record=on_record,
            aliases=_alias_file(aliases),
            mappings=[load_mapping(path) for path in mapping or ()],
            timezone=zone,
        )
        if watch:
            if len(paths) != 1 or not paths[0].is_dir():
                raise typer.BadParameter("--watch takes exactly one folder")
            console.print(f"watching {paths[0]} every {interval:g} s (Ctrl-C to stop)")
            on_report = _after_commit(
                store, settings, rules, as_json, partial(_print_ingest, verbose=verbose)
            )
            try:
                runner.watch(paths[0], interval, on_report=on_report)
            except KeyboardInterrupt:
                return
            return
        if retry_dead_letters:
            report = runner.retry_dead_letters(paths or None, rules=deviation_rules)
        else:
            report = runner.run(
                paths or [], format_name, full=full, dead_letter_path=dead_letters,
                rules=deviation_rules,
            )  # fmt: skip
        actions = _engine(store, settings, rules).run(report.new_deviations) if rules else None
    if as_json:
        _emit({**report.as_dict(), "workflows": actions.as_dict() if actions else None})
    else:
        _print_ingest(report, verbose)
        if actions is not None:
            _print_workflows(actions)
    if report.rejected:
        raise typer.Exit(3)


def _alias_file(path: Path | None) -> Aliases:
    try:
        return Aliases.load(path)
    except AliasError as error:
        raise typer.BadParameter(str(error), param_hint="--aliases") from None


def _shown(path: str) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(
            f"--timezone {name!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)"
        ) from None


def _ingest_mqtt(
    ctx: typer.Context,
    settings: Settings,
    url: str,
    topics: list[str],
    client_id: str,
    aliases: Aliases,
    rules: list[Workflow],
    as_json: bool,
    zone: tzinfo | None,
) -> None:
    try:
        broker = Broker.parse(url)
    except MqttError as error:
        raise typer.BadParameter(str(error)) from None
    with _open(ctx, as_json) as store:
        runner = IngestRunner(
            store,
            settings.home / "ingest",
            scope=settings.uri or "embedded",
            aliases=aliases,
            timezone=zone,
        )

        def committed(report: IngestReport) -> None:
            created = sum(w["created"] for w in report.writes.values())
            line = (
                f"{len(report.sources)} messages committed, {created} created, "
                f"{report.rejected} rejected"
            )
            if report.rejected:
                line += f" (dead letters: {report.dead_letters})"
            console.print(line)

        on_report = _after_commit(store, settings, rules, as_json, committed)
        try:
            subscriber = MqttIngest(
                runner,
                broker,
                topics,
                client_id=client_id,
                on_report=on_report,
                on_problem=lambda problem: err_console.print(f"[yellow]{problem}[/]"),
            )
            subscriber.connect()
        except MqttError as error:
            err_console.print(f"[red]{error}[/]")
            raise typer.Exit(2) from None
        console.print(
            f"subscribed to {', '.join(topics)} on {broker.host}:{broker.port} (Ctrl-C to stop)"
        )
        try:
            subscriber.run()
        except KeyboardInterrupt:
            pass
        finally:
            subscriber.close()


def _after_commit(
    store: Store,
    settings: Settings,
    rules: list[Workflow],
    as_json: bool,
    show: Callable[[IngestReport], None],
) -> Callable[[IngestReport], None]:
    """What a long-running ingest (--watch, --mqtt) does after each commit: report, and run
    the workflows on the new deviations on a thread of their own (in commit order), so
    rules that analyse root causes never hold up loading."""
    engine = _engine(store, settings, rules) if rules else None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workflows") if rules else None

    def fire(report: IngestReport) -> None:
        try:
            actions = engine.run(report.new_deviations)
        except Exception as error:  # reported, and the next commit is tried again
            err_console.print(f"[red]workflow rules failed: {error}[/]")
            return
        if actions.fired and not as_json:
            _print_workflows(actions)

    def on_report(report: IngestReport) -> None:
        if as_json:
            _emit_report(report)
        else:
            show(report)
        if pool is not None:
            pool.submit(fire, report)

    return on_report


def _emit_report(report: IngestReport) -> None:
    typer.echo(json.dumps(report.as_dict(), default=str))


def _print_ingest(report: IngestReport, verbose: bool = False) -> None:
    """One row per source system and format (``verbose``: per file, paths relative to the
    working directory), the deviation rules apart from the records."""
    table = Table(
        title=f"ingest run {report.run_id}",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    first = ("file",) if verbose else ("system", "format")
    counts = ("files", "records", "loaded", "parked", "rejected", "s")
    for column in first:
        table.add_column(column, overflow="fold")
    for column in counts:
        table.add_column(column, justify="right")
    groups: dict[tuple[str, ...], list[SourceReport]] = {}
    unchanged = [s for s in report.sources if s.unchanged_since_last_run]
    for source in report.sources:
        if source.format != "rules" and not source.unchanged_since_last_run:
            name = (_shown(source.path),) if verbose else (source.system or "?", source.format)
            groups.setdefault(name, []).append(source)
    for name, sources in groups.items():
        table.add_row(
            *name,
            str(len(sources)),
            str(sum(s.records for s in sources)),
            str(sum(s.loaded for s in sources)),
            str(sum(s.parked for s in sources)),
            str(sum(s.rejected for s in sources)),
            f"{sum(s.seconds for s in sources):.2f}",
        )
    if groups:
        console.print(table)
    if unchanged:
        console.print(
            f"{len(unchanged)} files unchanged since the last run, skipped (--full reads them)"
        )
    rules = [s for s in report.sources if s.format == "rules"]
    if rules:
        console.print(
            f"deviation rules: {report.findings} findings, {len(report.new_deviations)} new "
            f"deviations ({sum(s.seconds for s in rules):.2f} s)"
        )
    created = sum(w["created"] for w in report.writes.values())
    updated = sum(w["updated"] for w in report.writes.values())
    rate = report.records / report.seconds if report.seconds else 0
    console.print(
        f"{report.records} records in {report.seconds:.2f} s ({rate:,.0f}/s): "
        f"{created} nodes/relationships created, {updated} updated, {report.rejected} rejected"
    )
    if report.stubbed:
        named = ", ".join(f"{label} {n}" for label, n in sorted(report.stubbed.items()))
        console.print(
            f"created unresolved (only named by other records, no master record yet): {named}"
        )
    replayed = report.replayed
    if replayed is not None:
        console.print(
            f"replayed {len(replayed['dead_letter_files'])} dead-letter files: read "
            f"{len(replayed['sources'])} files and webhook bodies again; "
            f"{len(replayed['not_replayable'])} dead letters name nothing to read again"
        )
        for entry in replayed["not_replayable"][:5]:
            err_console.print(f"  {entry.get('source')}: {entry['why']}", markup=False)
    declared = report.aliases or {}
    if declared.get("added") or declared.get("merged") or declared.get("renamed"):
        console.print(
            f"{declared['added']} aliases stored; merged {len(declared['merged'])} nodes into "
            f"their business keys, renamed {len(declared['renamed'])}"
        )
    if report.parked or report.unparked:
        console.print(
            f"{report.parked} records parked until what they name arrives, {report.unparked} "
            f"parked earlier loaded now; {report.waiting} waiting (opsgraph ingest --pending)"
        )
    for rejection in report.rejections[:5]:
        err_console.print(
            f"rejected {Path(rejection['source']).name} {rejection['position']}: "
            f"{rejection['reason']}",
            soft_wrap=True,
            markup=False,
        )
    if len(report.rejections) > 5:
        err_console.print(f"… and {len(report.rejections) - 5} more")
    if report.dead_letters:
        err_console.print(
            f"[yellow]rejected records are in {report.dead_letters}; files with rejected "
            "records are read again by the next run[/]"
        )


def _print_pending(entries: list[Parked], as_json: bool) -> None:
    if as_json:
        _emit([{k: v for k, v in vars(e).items() if k != "rows"} for e in entries])
        return
    if not entries:
        console.print("nothing is waiting: every record loaded or was rejected")
        return
    console.print(f"{len(entries)} record(s) waiting for an entity they name:")
    for e in entries:
        tries = f"{e.attempts} {'try' if e.attempts == 1 else 'tries'}"
        console.print(
            f"  {Path(e.source).name} {e.position} (since {e.since[:16]}, {tries}): {e.reason}",
            soft_wrap=True,
            markup=False,
        )


# -- aliases --------------------------------------------------------------------------------------

aliases_app = typer.Typer(
    help="Other systems' IDs for our entities, kept in the graph and applied by every ingest "
    "path (files, --watch, webhooks, MQTT, GraphQL); exports translate back.",
    no_args_is_help=True,
)
app.add_typer(aliases_app, name="aliases")


def _declare(ctx: typer.Context, entries: list[Alias], source: str, as_json: bool) -> None:
    with _open(ctx, as_json) as store:
        try:
            done = identity.declare(store, entries, source)
        except AliasError as error:
            err_console.print(f"[red]{error}[/]", soft_wrap=True)
            raise typer.Exit(2) from None
    if as_json:
        _emit(done.as_dict())
        return
    console.print(f"{done.added} aliases stored, {done.unchanged} already known")
    for what in done.merged:
        console.print(f"  merged {what}")
    for what in done.renamed:
        console.print(f"  renamed {what}")
    if done.merged:
        console.print(f"  {done.relationships_moved} relationships moved")


@aliases_app.command("import")
def aliases_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help='TOML: [Machine] "DMU65-A" = "M-101".')],
    as_json: JsonOption = False,
) -> None:
    """Store the aliases of a TOML file; nodes already stored under an alias are merged into
    the node of its business key (relationships moved, provenance kept)."""
    _declare(ctx, _alias_file(file).entries, str(file), as_json)


@aliases_app.command("add")
def aliases_add(
    ctx: typer.Context,
    label: Annotated[str, typer.Argument(help="Machine, Person, Supplier, Product, ...")],
    alias: Annotated[str, typer.Argument(help="The ID the other system uses.")],
    key: Annotated[str, typer.Argument(help="Our business key for the entity.")],
    system: Annotated[
        str, typer.Option(help="The system that uses the ID (exports to it translate back).")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Declare one alias (merging the nodes, as import does)."""
    try:
        node_spec(label)
    except SchemaError as error:
        raise typer.BadParameter(str(error), param_hint="LABEL") from None
    _declare(ctx, [Alias(label, alias, key, system)], "cli", as_json)


@aliases_app.command("remove")
def aliases_remove(
    ctx: typer.Context,
    label: Annotated[str, typer.Argument(help="The entity's label.")],
    alias: Annotated[str, typer.Argument(help="The other system's ID.")],
    system: Annotated[
        str, typer.Option(help="The system, if the alias was declared with one.")
    ] = "",
) -> None:
    """Forget an alias: later records with that ID make a node of their own again (nodes it
    already merged stay merged)."""
    try:
        node_spec(label)
    except SchemaError as error:
        raise typer.BadParameter(str(error), param_hint="LABEL") from None
    with _open(ctx, False) as store:
        removed = identity.remove(store, label, alias, system)
    if not removed:
        err_console.print(f"no alias {alias!r} for {label} is stored")
        raise typer.Exit(1)
    console.print(f"removed {label} alias {alias!r}")


@aliases_app.command("list")
def aliases_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every stored alias, with the system that uses it and where it was declared."""
    with _open(ctx, as_json) as store:
        rows = identity.listing(store)
    _listing(
        rows,
        as_json,
        "aliases",
        {
            "label": lambda r: r["label"],
            "alias": lambda r: r["alias"],
            "business key": lambda r: r["key"],
            "system": lambda r: r["system"],
            "declared in": lambda r: r["source_record"] or "",
        },
    )


@aliases_app.command("suggest")
def aliases_suggest(
    ctx: typer.Context,
    label: Annotated[list[str] | None, typer.Option(help="Only this label (repeatable).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Likely duplicates for a human to confirm (same name, keys differing only in case,
    punctuation or leading zeros, a node only named by records whose key is another's name),
    each with the command that merges them."""
    with _open(ctx, as_json) as store:
        try:
            found = identity.suggest(store, label)
        except SchemaError as error:
            raise typer.BadParameter(str(error), param_hint="--label") from None
    if as_json:
        _emit([s.as_dict() for s in found])
        return
    if not found:
        console.print("no likely duplicates")
        return
    for s in found:
        console.print(f"{s.label} {s.alias!r} looks like {s.key!r}: {s.reason}", markup=False)
        console.print(f"  opsgraph aliases add {s.label} {s.alias} {s.key}", markup=False)


# -- root-cause analysis --------------------------------------------------------------------------


@app.command("rca")
def rca(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(help="A deviation ID (e.g. DEV-SCRAP-1000123/0010), or 'common'."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Analyse every deviation of production work.")
    ] = False,
    since: Annotated[
        datetime | None, typer.Option(help="With --all or common: deviations from this date.")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="With common: up to this date.")] = None,
    deviation_type: Annotated[
        str | None, typer.Option("--type", help="With common: deviation type, e.g. scrap.")
    ] = None,
    line: Annotated[str | None, typer.Option(help="With common: line ID, e.g. L2.")] = None,
    window: Annotated[float, typer.Option(help="Days of history around the deviation.")] = 30.0,
    save: Annotated[bool, typer.Option(help="Write CAUSED_BY/CONTRIBUTED_TO edges.")] = True,
    html: Annotated[
        Path | None, typer.Option(help="Also write the evidence graph as a standalone page.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Rank the likely root causes of a deviation, with the evidence for each.

    `opsgraph rca DEV-ID` analyses one deviation; `opsgraph rca --all` every deviation of
    production work (scrap, out of spec, short and late orders, downtime, failed checklist
    items); `opsgraph rca common --type scrap --line L2` finds causes shared by a set of
    deviations, grouped by pattern.
    """
    with _open(ctx, as_json) as store:
        analyzer = RootCauseAnalyzer(store, window_days=window)
        if target == "common":
            found = analyzer.common_causes(deviation_type, line, _aware(since), _aware(until))
            if as_json:
                _emit(found)
            else:
                _print_common(found)
            return
        if all_:
            ids = analyzer.deviations(_aware(since))
        elif target:
            ids = [target]
        else:
            raise typer.BadParameter("give a deviation ID, --all, or 'common'")
        results, skipped = [], []
        with Progress(
            SpinnerColumn(),
            TextColumn("analysing deviations"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=err_console,
            disable=as_json or not all_,
            transient=True,
        ) as progress:
            task = progress.add_task("rca", total=len(ids))
            for deviation_id in ids:
                try:
                    result = analyzer.analyze(deviation_id)
                except RcaError as error:
                    if not all_:
                        raise
                    skipped.append(str(error))
                    continue
                finally:
                    progress.advance(task)
                if save:
                    analyzer.persist(result)
                results.append(result)
    if skipped:
        err_console.print(f"[yellow]{len(skipped)} deviation(s) not analysed[/], e.g. {skipped[0]}")
    if not results:
        return
    if html is not None:
        html.write_text(evidence.render(results[0]))
        err_console.print(f"evidence graph of {results[0].deviation} written to {html}")
    if as_json:
        _emit([r.as_dict() for r in results] if all_ else results[0].as_dict())
        return
    for result in results if not all_ else results[:10]:
        _print_rca(result)
    if all_:
        console.print(
            f"analysed {len(results)} deviations"
            + (" (first 10 shown)" if len(results) > 10 else "")
        )


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _path_text(path: list[dict[str, Any]]) -> str:
    parts = []
    for step in path:
        if "label" in step:
            parts.append(f"({step['label']} {step['key']})")
        else:
            arrow = (
                f"-[:{step['type']}]->" if step["direction"] == "out" else f"<-[:{step['type']}]-"
            )
            parts.append(arrow)
    return "".join(parts)


def _print_rca(result: RcaResult) -> None:
    console.print(f"[bold]{result.deviation}[/] ({result.deviation_type}) {result.description}")
    if not result.clear:
        console.print("  [yellow]no clear cause[/]; nearest candidates:")
    for rank, cause in enumerate(result.presented, start=1):
        console.print(
            f"  {rank}. [bold]{cause.label} {cause.key}[/] "
            f"({cause.cause_type.replace('_', ' ')}, confidence {cause.confidence:.0%})"
        )
        console.print(_indented(cause.explanation), soft_wrap=True, markup=False)
        for path in cause.evidence[:1]:
            text = _indented(f"evidence: {_path_text(path)}")
            console.print(text, soft_wrap=True, markup=False, style="dim")
    for note in result.notes:
        if not note.startswith("no clear cause"):  # said above
            err_console.print(f"  [yellow]note:[/] {note}")


def _indented(text: str) -> str:
    """A paragraph under a numbered line, wrapped to the terminal with its indent kept."""
    width = max(40, console.width - 1)
    return textwrap.fill(text, width, initial_indent=" " * 5, subsequent_indent=" " * 5)


def _print_common(found: dict[str, Any]) -> None:
    console.print(f"{found['selected']} deviations selected, {found['analysed']} analysed")
    for item in found["shared_causes"]:
        console.print(f"  [bold]{item['pattern']}[/] ({item['cause_type']}): {item['explanation']}")


# -- proactive risk ---------------------------------------------------------------------------


@app.command("risk")
def risk(
    ctx: typer.Context,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Learn from before, score after (now).")
    ] = None,
    horizon: Annotated[float, typer.Option(min=0.1, help="Days ahead to score.")] = 14.0,
    top: Annotated[int, typer.Option(min=1, help="Orders to list.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Score the orders about to run by their links to what preceded past deviations."""
    moment = _aware(as_of) or datetime.now(UTC)
    with _open(ctx, as_json) as store:
        model = RiskModel(store).fit(moment)
        scored = model.score(moment, horizon_days=horizon)[:top]
    if as_json:
        _emit(
            {
                "as_of": moment.isoformat(),
                "base_rate": model.base,
                "orders": [r.as_dict() for r in scored],
            }
        )
        return
    if not scored:
        console.print(
            f"no operations planned between {moment:%Y-%m-%d %H:%M} and {horizon:g} days later"
        )
    for result in scored:
        console.print(f"[bold]{result.order}[/] risk {result.risk:.2f}")
        for reason in result.reasons:
            console.print(
                f"   {reason.label} {reason.key} ({reason.cause_type}): {reason.deviating} of "
                f"{reason.exposed} past operations with it deviated (base {model.base:.0%})"
            )


# -- workflows ---------------------------------------------------------------------------------

workflows_app = typer.Typer(
    help="Rules that turn deviations and orders at risk into actions for the right person."
)
app.add_typer(workflows_app, name="workflows")
RulesArgument = Annotated[Path, typer.Argument(help="The workflows file (YAML).")]


def _rules(path: Path) -> list[Workflow]:
    try:
        return load_workflows(path)
    except WorkflowError as error:
        raise typer.BadParameter(str(error)) from None


@workflows_app.command("check")
def workflows_check(rules: RulesArgument, as_json: JsonOption = False) -> None:
    """Validate a workflows file and say what each rule does."""
    workflows = _rules(rules)
    if as_json:
        _emit([{**vars(w), "export": str(w.export)} for w in workflows])
        return
    for w in workflows:
        when = (
            f"deviation {'/'.join(w.types)}"
            + (f" severity {'/'.join(w.severities)}" if w.severities else "")
            if w.trigger == "deviation"
            else f"order risk >= {w.risk_above:g} within {w.horizon_days:g} days"
        )
        who = w.person or " with ".join(x for x in (w.role, w.skill and f"skill {w.skill}") if x)
        console.print(
            f"[bold]{w.name}[/]: when {when}" + (f" on {'/'.join(w.lines)}" * bool(w.lines))
        )
        console.print(f"   then action '{w.title}' for {who or 'nobody in particular'}, "
                      f"due in {w.due_hours:g} h, priority {w.priority}")  # fmt: skip


@workflows_app.command("run")
def workflows_run(
    ctx: typer.Context,
    rules: RulesArgument,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="When risk rules score from (now).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fire every rule whose trigger is met and that has not fired yet (safe to repeat)."""
    settings: Settings = ctx.obj
    workflows = _rules(rules)
    with _open(ctx, as_json) as store:
        report = _engine(store, settings, workflows).run(as_of=_aware(as_of))
    if as_json:
        _emit(report.as_dict())
        return
    _print_workflows(report)


def _engine(store: Store, settings: Settings, workflows: list[Workflow]) -> WorkflowEngine:
    """The engine, with decision memory only when a rule attaches similar decisions (the
    embedding model takes seconds to load)."""
    memory = DecisionMemory(store) if any(w.similar_decisions for w in workflows) else None
    return WorkflowEngine(store, workflows, settings.home, memory)


def _print_workflows(report: WorkflowReport) -> None:
    for fired in report.fired:
        who = fired.assignee or "unassigned"
        exported = f"; exported to {', '.join(fired.exported)}" if fired.exported else ""
        console.print(f"{fired.action_id} -> {who} ({fired.assigned_because}){exported}")
    console.print(
        f"{len(report.fired)} actions created, {report.already} already existed, "
        f"{len(report.closed)} deviations closed"
    )
    for problem in report.export_failures + report.problems:
        err_console.print(f"[yellow]{problem}[/]")


# -- decision memory ----------------------------------------------------------------------------


@app.command("embed")
def embed(
    ctx: typer.Context,
    rebuild: Annotated[bool, typer.Option(help="Recompute every embedding.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Embed new or changed notes and decisions so they can be searched by meaning."""
    with (
        _open(ctx, as_json) as store,
        Progress(
            SpinnerColumn(),
            TextColumn("embedding"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=err_console,
            disable=as_json,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("embedding", total=None)
        memory = DecisionMemory(store)
        report = memory.embed(
            rebuild=rebuild,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        _emit(report.as_dict())
    else:
        console.print(
            f"embedded {report.embedded} texts ({report.unchanged} unchanged, "
            f"{report.derived_notes} decision/action texts refreshed) in {report.seconds:.1f} s"
        )


@app.command("search")
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What happened, in plain words.")],
    machine: Annotated[str | None, typer.Option(help="Only notes about this machine.")] = None,
    line: Annotated[str | None, typer.Option(help="Only notes about this line.")] = None,
    product: Annotated[str | None, typer.Option(help="Only notes about this product.")] = None,
    deviation_type: Annotated[str | None, typer.Option("--type", help="Deviation type.")] = None,
    author: Annotated[str | None, typer.Option(help="Written by this person ID.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Written on or after.")] = None,
    until: Annotated[datetime | None, typer.Option(help="Written on or before.")] = None,
    deviation: Annotated[
        str | None, typer.Option(help="Search from a deviation: similar situations and decisions.")
    ] = None,
    k: Annotated[int, typer.Option("--top", "-k", min=1, max=100, help="How many results.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Search notes and decisions by meaning, filtered by where they sit in the graph."""
    filters = Filters(machine, line, product, deviation_type, author, _aware(since), _aware(until))
    with _open(ctx, as_json) as store:
        memory = DecisionMemory(store)
        memory.embed()  # new notes since the last run
        if deviation:
            hits = memory.similar_decisions(deviation, k=k)
        else:
            hits = memory.search(query, filters=filters, k=k)
    if as_json:
        _emit([h.as_dict() for h in hits])
        return
    for rank, hit in enumerate(hits, start=1):
        when = f"{hit.written_at:%Y-%m-%d}" if hit.written_at else ""
        console.print(
            f"{rank}. [bold]{hit.note}[/] {when} ({hit.kind}) {hit.score:.2f}: {hit.text}"
        )
        for decision in hit.decisions[:2]:
            outcome = decision["outcome"] or "no outcome recorded"
            console.print(
                f"     decided {decision['decision']}: {decision['summary']} -> {outcome}"
            )


# -- API ------------------------------------------------------------------------------------------

apikey_app = typer.Typer(help="API keys for the GraphQL API.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


@apikey_app.command("create")
def apikey_create(
    ctx: typer.Context,
    role: Annotated[
        str, typer.Option(help="reader (queries) or writer (also mutations).")
    ] = "reader",
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    settings: Settings = ctx.obj
    key = ApiKeys(settings.home).create(role, name)
    if as_json:
        _emit({"key": key, "role": role, "name": name})
    else:
        console.print(f"{key}\n[dim]{role} key; send it as 'Authorization: Bearer <key>'[/]")


@apikey_app.command("list")
def apikey_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the API keys: ID, name, role, created and last used (never the keys)."""
    settings: Settings = ctx.obj
    _listing(
        ApiKeys(settings.home).listing(),
        as_json,
        "API keys",
        {
            "id": lambda r: r["id"],
            "name": lambda r: r["name"],
            "role": lambda r: r["role"],
            "created": lambda r: r["created"][:19],
            "last used": lambda r: r["last_used"][:19] or "-",
        },
    )


KeyArgument = Annotated[str, typer.Argument(help="The key's ID (from `apikey list`) or name.")]


@apikey_app.command("revoke")
def apikey_revoke(ctx: typer.Context, which: KeyArgument, as_json: JsonOption = False) -> None:
    """Revoke an API key; a running server refuses it from its next request on."""
    settings: Settings = ctx.obj
    try:
        gone = ApiKeys(settings.home).revoke(which)
    except KeyError as error:
        err_console.print(f"[red]{error.args[0]}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        _emit(gone)
    else:
        console.print(f"revoked {gone['id']} ({gone['role']}, {gone['name'] or 'no name'})")


@apikey_app.command("rotate")
def apikey_rotate(ctx: typer.Context, which: KeyArgument, as_json: JsonOption = False) -> None:
    """Replace an API key with a new one of the same name and role; the old one stops working
    at once. The new key is printed once."""
    settings: Settings = ctx.obj
    try:
        key, entry = ApiKeys(settings.home).rotate(which)
    except KeyError as error:
        err_console.print(f"[red]{error.args[0]}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        _emit({"key": key, **entry})
    else:
        console.print(
            f"{key}\n[dim]{entry['role']} key {entry['id']}, replaces {entry['replaces']}; "
            "send it as 'Authorization: Bearer <key>'[/]"
        )


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    production: Annotated[bool, typer.Option(help="No GraphiQL, no introspection.")] = False,
    auth: Annotated[bool, typer.Option(help="Require API keys (default).")] = True,
    cors: Annotated[list[str] | None, typer.Option(help="Allowed browser origin.")] = None,
    workflows: Annotated[
        Path | None, typer.Option(help="Workflows file: run the rules on webhook deviations.")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Worker processes (GraphQL is CPU-bound: one per core serves more)."
        ),
    ] = 1,
) -> None:
    """Serve the GraphQL API (GraphiQL at /graphql), /health and /ready with uvicorn."""
    import uvicorn

    settings: Settings = ctx.obj
    rules = _rules(workflows) if workflows else []
    if workers > 1:
        # Each worker is a process of its own with its own store connection: start the
        # embedded store here once, then hand the settings and options over the environment.
        _open(ctx, False).close()
        options = {"auth": auth, "production": production, "cors_origins": cors or []}
        if workflows:
            options["workflows"] = str(workflows.resolve())
        os.environ.update({**settings.to_env(), SERVE_OPTIONS: json.dumps(options)})
        console.print(f"GraphQL on http://{host}:{port}/graphql ({workers} workers)")
        uvicorn.run(
            "opsgraph.api.app:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
        )
        return
    store = _open(ctx, False)
    console.print(f"GraphQL on http://{host}:{port}/graphql ({store.description})")
    try:
        served = create_app(
            store,
            settings,
            auth=auth,
            production=production,
            cors_origins=cors or [],
            workflows=rules,
        )
        settle_heap()
        uvicorn.run(served, host=host, port=port)
    finally:
        store.close()


# -- demo ---------------------------------------------------------------------------------------

demo_app = typer.Typer(
    help="The demo plant: generate it in the real source formats, load it, show what was found.",
    invoke_without_command=True,
)
app.add_typer(demo_app, name="demo")

SeedOption = Annotated[int, typer.Option(help="Random seed; the same seed gives the same plant.")]
ScaleOption = Annotated[float, typer.Option(min=0.1, help="Size: 1 = three lines, 10 = thirty.")]
WeeksOption = Annotated[int, typer.Option(min=3, help="Weeks of production to simulate.")]
VariantOption = Annotated[
    list[str] | None,
    typer.Option(
        "--variant",
        help="What the plant's exports lack or contain (repeatable): " + ", ".join(VARIANTS) + ".",
    ),
]


@demo_app.callback()
def demo(
    ctx: typer.Context,
    seed: SeedOption = 7,
    scale: ScaleOption = 1.0,
    weeks: WeeksOption = 6,
    variant: VariantOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate the demo plant, ingest it into the store and print what the graph shows."""
    if ctx.invoked_subcommand is not None:
        return
    settings: Settings = ctx.obj
    name = f"seed-{seed}-scale-{scale:g}-weeks-{weeks}" + "".join(
        f"-{v}" for v in sorted(set(variant or ()))
    )
    out = settings.home / "demo" / name
    with err_console.status(f"Generating the demo plant in {out}…"):
        truth = generate(out, seed=seed, scale=scale, weeks=weeks, variants=variant or ())
    with _open(ctx, as_json) as store:
        apply_schema(store)
        runner = IngestRunner(
            store,
            settings.home / "ingest",
            scope=settings.uri or "embedded",
            aliases=Aliases.load(out / "aliases.toml"),
        )
        with err_console.status("Loading ERP, MES and worker data…"):
            report = runner.run([out / "erp", out / "mes", out / "worker"])
        found = deviation_summary(store)
        worst = store.read(queries.WORST_DEVIATIONS, severities=["critical", "high"], limit=5)
        analyzer = RootCauseAnalyzer(store)
        analyses = []
        for row in worst:
            try:
                result = analyzer.analyze(row["deviation"])
            except RcaError:
                continue
            analyzer.persist(result)
            analyses.append(result)
        stats = graph_stats(store)
    if as_json:
        _emit(
            {
                "out": str(out),
                "ingest": report.as_dict(),
                "deviations": found,
                "worst": worst,
                "injected_causes": len(truth["causes"]),
                "stats": stats.as_dict(),
                "root_causes": [r.as_dict() for r in analyses],
            }
        )
        return
    _print_ingest(report)
    table = Table(title="deviations found by the rules")
    for column in ("type", "critical", "high", "medium"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for kind, by_severity in found.items():
        table.add_row(kind, *(str(by_severity.get(s, 0)) for s in ("critical", "high", "medium")))
    console.print(table)
    console.print("[bold]Most likely causes of the latest high-severity deviations[/]")
    for result in analyses[:3]:
        _print_rca(result)
    console.print(
        f"{stats.total_nodes} nodes, {stats.total_relationships} relationships; "
        f"{len(truth['causes'])} injected root causes in {out / 'ground_truth.json'}"
    )


@demo_app.command("generate")
def demo_generate(
    out: Annotated[Path, typer.Option(help="Directory to write the plant's files to.")],
    seed: SeedOption = 7,
    scale: ScaleOption = 1.0,
    weeks: WeeksOption = 6,
    variant: VariantOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a folder that already holds files.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write the demo plant's source files and its ground truth, without loading them."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file, not a folder", param_hint="--out")
    if not force and out.is_dir() and any(out.iterdir()):
        # a plant written over another leaves the old one's files beside the new ones
        raise typer.BadParameter(
            f"{out} is not empty; choose an empty folder or pass --force", param_hint="--out"
        )
    truth = generate(out, seed=seed, scale=scale, weeks=weeks, variants=variant or ())
    files = sum(1 for p in out.rglob("*") if p.is_file())
    if as_json:
        _emit(
            {
                "out": str(out),
                "files": files,
                "orders": truth["orders"],
                "causes": len(truth["causes"]),
            }
        )
    else:
        console.print(
            f"wrote {files} files for {truth['orders']} orders to {out}; "
            f"{len(truth['causes'])} injected root causes in ground_truth.json"
        )


def main() -> None:
    """Console entry point: known failures print one clear line instead of a traceback."""
    try:
        app()
    except (
        StoreError,
        EmbeddedServerError,
        SchemaError,
        UnknownFormat,
        FileNotFoundError,
        RcaError,
        DecisionMemoryError,
        ValueError,
    ) as error:
        err_console.print(f"[red]error:[/] {error}")
        sys.exit(1)
