"""The GraphQL API through HTTP: deep queries, pagination, batching, auth and limits."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from graphql import GraphQLError, GraphQLFloat

from opsgraph.api.app import ApiKeys, create_app
from opsgraph.api.graphql import Context, build_schema
from opsgraph.graph import read
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import AsyncStore, Store, StoreError
from opsgraph.graph.writer import BulkWriter
from opsgraph.schema import rel_spec

T0 = datetime(2026, 11, 2, 6, tzinfo=UTC)


@pytest.fixture
def api(store: Store, settings: Settings, tmp_path: Path) -> Iterator[tuple[TestClient, dict]]:
    w = BulkWriter(store)
    w.upsert_nodes("Machine", [{"machine_id": f"M-{m}", "machine_type": "mill"} for m in range(3)])
    orders = [
        {
            "order_id": f"{1000100 + i}",
            "total_quantity": 100.0,
            "planned_start": T0 + timedelta(hours=i),
        }
        for i in range(40)
    ]
    w.upsert_nodes("ProductionOrder", orders)
    ops = [
        {"operation_id": f"{o['order_id']}/{n:04d}", "actual_start": o["planned_start"]}
        for o in orders
        for n in (10, 20)
    ]
    w.upsert_nodes("Operation", ops)
    w.upsert_relationships(
        rel_spec("ProductionOrder", "HAS_OPERATION", "Operation"),
        [{"start": op["operation_id"].split("/")[0], "end": op["operation_id"]} for op in ops],
    )
    w.upsert_relationships(
        rel_spec("Operation", "ON_MACHINE", "Machine"),
        [{"start": op["operation_id"], "end": f"M-{i % 3}"} for i, op in enumerate(ops)],
    )
    w.upsert_nodes("Alarm", [{"alarm_id": "A-1", "code": "SPINDLE_VIB", "raised_at": T0}])
    w.upsert_relationships(rel_spec("Machine", "RAISED", "Alarm"), [{"start": "M-0", "end": "A-1"}])
    w.upsert_nodes(
        "Deviation",
        [{"deviation_id": "DEV-1", "deviation_type": "scrap", "severity": "high", "start": T0}],
    )
    w.upsert_relationships(
        rel_spec("Deviation", "ABOUT", "ProductionOrder"), [{"start": "DEV-1", "end": "1000100"}]
    )
    w.upsert_nodes("Person", [{"person_id": "00003310", "name": "Mira Sahin"}])
    home_settings = Settings(home=tmp_path)
    keys = ApiKeys(tmp_path)
    tokens = {"reader": keys.create("reader", "tests"), "writer": keys.create("writer", "tests")}
    # entered, so the app's lifespan runs: its resolvers read through the async driver
    with TestClient(create_app(store, home_settings)) as client:
        assert client.app.state.reads is not None
        yield client, tokens


def _post(client: TestClient, token: str | None, query: str, variables: dict | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )


@contextmanager
def _counting(client: TestClient) -> Iterator[list[str]]:
    """The reads the app asks of the store while the block runs (its async reads, one per
    DataLoader batch; reads asked within two turns of the loop may share a round trip,
    which ``_round_trips`` counts)."""
    reads = client.app.state.reads
    original = reads.read
    calls: list[str] = []

    async def counting(query: str, **params):  # type: ignore[no-untyped-def]
        calls.append(query)
        return await original(query, **params)

    reads.read = counting
    try:
        yield calls
    finally:
        reads.read = original


DEEP = """
query ($first: Int!, $after: String) {
  productionOrders(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id orderId totalQuantity plannedStart
      operations { operationId machine { machineId alarms { code } } }
      deviationsAbout { deviationId severity }
    }
  }
}
"""


def test_requests_without_a_valid_key_are_refused(api: tuple) -> None:
    client, _ = api
    for token in (None, "og_not-a-key"):
        response = _post(client, token, "{ machines(first: 1) { nodes { machineId } } }")
        assert response.status_code == 401
        assert "API key" in response.json()["detail"]


def test_a_key_made_while_the_server_runs_works_at_once(api: tuple, tmp_path: Path) -> None:
    """The server keeps the keys file's contents between requests; `opsgraph apikey create`
    in another process changes the file, and the next request sees the new key."""
    client, tokens = api
    query = "{ machines(first: 1) { nodes { machineId } } }"
    assert _post(client, tokens["reader"], query).status_code == 200
    assert _post(client, "og_made-later", query).status_code == 401
    later = ApiKeys(tmp_path).create("reader", "made while serving")
    assert _post(client, later, query).status_code == 200


def test_a_deep_query_follows_the_graph(api: tuple) -> None:
    client, tokens = api
    body = _post(client, tokens["reader"], DEEP, {"first": 2}).json()
    assert "errors" not in body, body
    first = body["data"]["productionOrders"]["nodes"][0]
    assert first["id"] == "ProductionOrder:1000100" and first["totalQuantity"] == 100.0
    assert first["plannedStart"].startswith("2026-11-02T06:00:00")
    assert [op["operationId"] for op in first["operations"]] == ["1000100/0010", "1000100/0020"]
    assert first["operations"][0]["machine"] == [
        {"machineId": "M-0", "alarms": [{"code": "SPINDLE_VIB"}]}
    ]
    assert first["deviationsAbout"] == [{"deviationId": "DEV-1", "severity": "high"}]


def test_a_stored_value_of_the_wrong_type_is_a_field_error(api: tuple, store: Store) -> None:
    """Scalars take a short path through the executor (api/graphql/execution.py); a value
    the schema cannot represent still gets graphql-core's own error at its own path, null
    in its place, and the rest of the answer (another writer may have stored anything)."""
    client, tokens = api
    store.write(
        "MATCH (o:ProductionOrder {order_id: $order}) SET o.total_quantity = $bad",
        order="1000100",
        bad="lots",
    )
    query = "{ productionOrders(first: 2) { nodes { orderId totalQuantity } } }"
    body = _post(client, tokens["reader"], query).json()
    with pytest.raises(GraphQLError) as expected:
        GraphQLFloat.coerce_output_value("lots")
    assert [(e["message"], e["path"]) for e in body["errors"]] == [
        (expected.value.message, ["productionOrders", "nodes", 0, "totalQuantity"])
    ]
    nodes = body["data"]["productionOrders"]["nodes"]
    assert nodes[0] == {"orderId": "1000100", "totalQuantity": None}
    assert nodes[1]["orderId"] == "1000101" and isinstance(nodes[1]["totalQuantity"], float)


def test_a_request_leaves_no_reference_cycles_of_its_own(api: tuple) -> None:
    """The executor and the DataLoaders go with the request, freed as soon as it ends:
    left in reference cycles they waited for Python's cycle collector, whose pauses grew
    with the requests in flight (70 ms at 16 concurrent deep queries)."""
    client, tokens = api
    _post(client, tokens["reader"], DEEP, {"first": 5})  # warm: schema caches filled
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        body = _post(client, tokens["reader"], DEEP, {"first": 5}).json()
        gc.collect()
        left = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert len(body["data"]["productionOrders"]["nodes"]) == 5
    assert not left & {"LeanExecutor", "GraphQLResolveInfoHelpers", "Context", "DataLoader"}


def test_node_reads_what_is_asked_of_it_without_waiting_for_it(api: tuple) -> None:
    """node(id) knows the key before the node is read: the related values the query asks
    for (through a fragment on the label or on Node) are read alongside, not after; and
    an unknown key is still just null."""
    client, tokens = api
    reads = client.app.state.reads
    spans: list[tuple[str, float, float]] = []
    original = reads.round_trip

    async def timed(query: str, params: dict) -> tuple:  # type: ignore[type-arg]
        started = asyncio.get_running_loop().time()
        try:
            return await original(query, params)
        finally:
            spans.append((query, started, asyncio.get_running_loop().time()))

    reads.round_trip = timed  # type: ignore[method-assign]
    query = """query ($id: ID!) { node(id: $id) { id ... on Deviation { severity
        decisionsAbout { decisionId } } ...about } }
        fragment about on Node { ... on Deviation { causes { rank } } }"""
    body = _post(client, tokens["reader"], query, {"id": "Deviation:DEV-1"}).json()
    assert body["data"]["node"] == {
        "id": "Deviation:DEV-1",
        "severity": "high",
        "decisionsAbout": [],
        "causes": [],
    }

    def span(marker: str) -> tuple[float, float]:
        (found,) = [(start, end) for text, start, end in spans if marker in text]
        return found

    node_read_ends = span("MATCH (x:`Deviation`")[1]
    assert span("[:`ABOUT`]-(x:`Decision`)")[0] < node_read_ends
    assert span("CAUSED_BY|CONTRIBUTED_TO")[0] < node_read_ends
    body = _post(client, tokens["reader"], query, {"id": "Deviation:nope"}).json()
    assert body == {"data": {"node": None}}


def test_pagination_is_stable_and_complete(api: tuple) -> None:
    client, tokens = api
    seen, after = [], None
    while True:
        page = _post(client, tokens["reader"], DEEP, {"first": 7, "after": after}).json()
        connection = page["data"]["productionOrders"]
        seen += [n["orderId"] for n in connection["nodes"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert seen == [f"{1000100 + i}" for i in range(40)]


def test_following_relationships_is_batched_not_n_plus_1(api: tuple) -> None:
    client, tokens = api
    with _counting(client) as calls:
        body = _post(client, tokens["reader"], DEEP, {"first": 40}).json()
    assert len(body["data"]["productionOrders"]["nodes"]) == 40
    # one page query + one per relationship level (operations, machine, alarms, deviations)
    assert len(calls) == 5, calls


def test_node_refetches_by_id_and_filters_select(api: tuple) -> None:
    client, tokens = api
    query = (
        '{ node(id: "Machine:M-2") { id ... on Machine { machineId machineType } } '
        '  deviations(first: 5, filter: {severity: "high"}) { nodes { deviationId } } '
        '  none: deviations(first: 5, filter: {severity: "low"}) { nodes { deviationId } } }'
    )
    body = _post(client, tokens["reader"], query).json()
    assert body["data"]["node"] == {"id": "Machine:M-2", "machineId": "M-2", "machineType": "mill"}
    assert body["data"]["deviations"]["nodes"] == [{"deviationId": "DEV-1"}]
    assert body["data"]["none"]["nodes"] == []


def test_hostile_and_malformed_queries_get_clear_errors(api: tuple) -> None:
    client, tokens = api
    nested = (
        "{ machines(first: 1) { nodes { "
        + "operationsOnMachine { machine { " * 6
        + "machineId"
        + " } }" * 6
        + " } } }"
    )
    body = _post(client, tokens["reader"], nested).json()
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]
    body = _post(client, tokens["reader"], "{ machines(first: 1) { nodes { machineId }").json()
    assert "Syntax Error" in body["errors"][0]["message"]
    body = _post(client, tokens["reader"], DEEP, {"first": "many"}).json()
    assert "Int cannot represent" in body["errors"][0]["message"]
    body = _post(client, tokens["reader"], DEEP, {"first": 1000}).json()
    assert body["errors"][0]["message"].startswith("query too costly: up to 1,")
    body = _post(client, tokens["reader"], "{ machines(first: 1000) { nodes { machineId } } }")
    assert body.json()["errors"][0]["message"] == "first must be between 1 and 100"
    body = _post(client, tokens["reader"], '{ node(id: "Robot:1") { id } }').json()
    assert body["errors"][0]["message"] == "unknown id 'Robot:1': expected 'Label:key'"
    assert "Traceback" not in str(body)
    headers = {"Authorization": f"Bearer {tokens['reader']}", "Content-Type": "application/json"}
    for body_text in (b'{"query": "{ machines', b"\xff\xfe", b"[1, 2"):
        response = client.post("/graphql", content=body_text, headers=headers)
        assert response.status_code == 400, response.text
        assert "Unable to parse request body as JSON" in response.text
    for _ in range(2):  # validation is remembered per text: errors and all
        body = _post(client, tokens["reader"], "{ machines(first: 1) { nodes { wheels } } }")
        message = body.json()["errors"][0]["message"]
        assert "Cannot query field 'wheels' on type 'Machine'" in message


def test_wide_queries_are_refused_by_their_estimated_size(api: tuple) -> None:
    client, tokens = api
    wide = """query ($n: Int!) { productionOrders(first: 100) { nodes {
        operations(first: $n) { machine { alarms(first: $n) { code } } } } } }"""
    body = _post(client, tokens["reader"], wide, {"n": 1000}).json()
    message = body["errors"][0]["message"]
    assert message.startswith("query too costly: up to 1,001,100,200 objects (limit 200,000)")
    assert body.get("data") is None
    # the same shape with small pages from the variable is fine (30,700 at most), and a
    # text found fine once is costed again when its pages come from variables
    body = _post(client, tokens["reader"], wide, {"n": 5}).json()
    assert "errors" not in body, body
    body = _post(client, tokens["reader"], wide, {"n": 1000}).json()
    assert body["errors"][0]["message"].startswith("query too costly: up to 1,001,100,200")
    # fragments count where they are spread
    spread = """{ productionOrders(first: 100) { nodes { ...deep } } }
        fragment deep on ProductionOrder {
          operations(first: 1000) { machine(first: 1000) { machineId } } }"""
    assert (
        "query too costly" in _post(client, tokens["reader"], spread).json()["errors"][0]["message"]
    )


def test_health_and_ready(api: tuple, tmp_path: Path) -> None:
    """/health says the process lives; /ready whether the store answers: 503 with what is
    down when it does not, and in production without the store's address or error text."""
    import socket

    from neo4j import GraphDatabase

    from opsgraph.graph.store import Store

    client, _ = api
    assert client.get("/health").json() == {"status": "ok"}
    up = client.get("/ready")
    assert up.status_code == 200 and up.json()["store"]["reachable"] is True
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Store(GraphDatabase.driver(f"bolt://127.0.0.1:{port}"), None, f"bolt://127.0.0.1:{port}")
    try:
        for production in (False, True):
            app = create_app(down, Settings(home=tmp_path), production=production)
            answer = TestClient(app).get("/ready")  # no lifespan: it would connect
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["status"] == "unavailable" and body["store"]["reachable"] is False
            assert (str(port) in answer.text) is not production
            assert TestClient(app).get("/health").status_code == 200
    finally:
        down.close()


RECORD = """
mutation ($client: String!, $about: [EntityRef!]!) {
  recordDecision(clientId: $client, decidedBy: "00003310", decisionType: "hold",
                 summary: "Hold the remaining housings for re-inspection", about: $about,
                 rationale: "Scrap above 10 % on the first order") { decisionId created }
}
"""


def test_writers_record_decisions_idempotently_and_readers_cannot(api: tuple, store: Store) -> None:
    client, tokens = api
    about = [{"label": "Deviation", "key": "DEV-1"}, {"label": "ProductionOrder", "key": "1000100"}]
    refused = _post(client, tokens["reader"], RECORD, {"client": "c-1", "about": about}).json()
    assert "may only read" in refused["errors"][0]["message"]
    first = _post(client, tokens["writer"], RECORD, {"client": "c-1", "about": about}).json()
    again = _post(client, tokens["writer"], RECORD, {"client": "c-1", "about": about}).json()
    assert first["data"]["recordDecision"] == {"decisionId": "DEC-c-1", "created": True}
    assert again["data"]["recordDecision"] == {"decisionId": "DEC-c-1", "created": False}
    linked = store.read(
        "MATCH (:Person {person_id: '00003310'})-[:DECIDED]->(d:Decision)-[:ABOUT]->(x) "
        "RETURN d.decision_id AS d, count(x) AS n, d.source_system AS system"
    )
    assert linked == [{"d": "DEC-c-1", "n": 2, "system": "opsgraph api"}]
    unknown = _post(
        client,
        tokens["writer"],
        RECORD,
        {"client": "c-2", "about": [{"label": "Deviation", "key": "DEV-404"}]},
    ).json()
    assert unknown["errors"][0]["message"] == "unknown Deviation 'DEV-404'"
    outcome = _post(
        client,
        tokens["writer"],
        'mutation { recordOutcome(decisionId: "DEC-c-1", result: "effective", '
        'description: "No more rejects") }',
    ).json()
    assert outcome["data"]["recordOutcome"] == "DEC-c-1/outcome"
    bad = _post(
        client,
        tokens["writer"],
        'mutation { recordOutcome(decisionId: "DEC-c-1", result: "great") }',
    ).json()
    assert bad["errors"][0]["message"].startswith("result: effective")
    ack = _post(client, tokens["writer"], 'mutation { acknowledgeDeviation(deviationId: "DEV-1") }')
    assert ack.json()["data"]["acknowledgeDeviation"] is True
    assert store.read("MATCH (d:Deviation {deviation_id: 'DEV-1'}) RETURN d.status AS s") == [
        {"s": "acknowledged"}
    ]


def test_new_deviations_are_pushed_to_subscribers(store: Store) -> None:
    import asyncio

    from opsgraph.api.graphql import Context, build_schema

    schema = build_schema()

    async def first_pushed() -> dict:
        stream = await schema.subscribe(
            "subscription { newDeviations(pollSeconds: 0.2) { deviationId severity } }",
            context_value=Context(store=store),
        )
        pushed = asyncio.create_task(stream.__anext__())  # the subscriber is listening
        await asyncio.sleep(0.5)
        BulkWriter(store).upsert_nodes(
            "Deviation", [{"deviation_id": "DEV-LIVE", "severity": "critical"}]
        )
        result = await asyncio.wait_for(pushed, timeout=10)
        await stream.aclose()
        return result.data

    assert asyncio.run(first_pushed()) == {
        "newDeviations": {"deviationId": "DEV-LIVE", "severity": "critical"}
    }


def test_notes_are_searchable_by_meaning_through_the_api(api: tuple, store: Store) -> None:
    from opsgraph.graph.memory import DecisionMemory

    client, tokens = api
    w = BulkWriter(store)
    w.upsert_nodes(
        "Note",
        [
            {"note_id": "N-1", "text": "Spindle bearing worn out, heavy vibration at high rpm."},
            {"note_id": "N-2", "text": "Coolant tank topped up after the weekend."},
        ],
    )
    w.upsert_relationships(
        rel_spec("Note", "ABOUT", "Deviation"), [{"start": "N-1", "end": "DEV-1"}]
    )
    w.upsert_relationships(
        rel_spec("Note", "ABOUT", "Machine"),
        [{"start": "N-1", "end": "M-0"}, {"start": "N-2", "end": "M-0"}],
    )
    DecisionMemory(store).embed()
    body = _post(
        client,
        tokens["reader"],
        '{ searchNotes(query: "the main shaft shakes when it turns fast", first: 1, '
        'machine: "M-0") { note similarity writtenAt } }',
    ).json()
    assert body["data"]["searchNotes"][0]["note"] == "N-1"
    body = _post(
        client, tokens["reader"], '{ similarDecisions(deviation: "DEV-404") { note } }'
    ).json()
    assert body["errors"][0]["message"] == "no deviation 'DEV-404' in the graph"


def test_root_causes_are_typed_with_evidence_paths(api: tuple) -> None:
    client, tokens = api
    query = """{ rootCauses(deviation: "DEV-1", top: 3) {
        deviation subjects { operations orders }
        causes { label key causeType score explanation
                 evidence { label key type direction at } } } }"""
    body = _post(client, tokens["reader"], query).json()
    assert "errors" not in body, body
    result = body["data"]["rootCauses"]
    assert result["deviation"] == "DEV-1"
    assert result["subjects"] == {
        "operations": ["1000100/0010", "1000100/0020"],
        "orders": ["1000100"],
    }
    for cause in result["causes"]:
        path = cause["evidence"][0]
        assert path[0]["label"] == "Deviation" and path[-1]["key"] == cause["key"]
    missing = _post(
        client, tokens["reader"], '{ rootCauses(deviation: "DEV-404") { deviation } }'
    ).json()
    assert missing["errors"][0]["message"] == "no deviation 'DEV-404' in the graph"


def test_timeline_orders_what_happened_around_an_entity(api: tuple, store: Store) -> None:
    client, tokens = api
    w = BulkWriter(store)
    w.upsert_nodes(
        "MachineState",
        [
            {
                "state_id": "M-0/s1",
                "state": "down",
                "reason_code": "INTERRUPTED",
                "start": T0 - timedelta(minutes=30),
            },
        ],
    )
    w.upsert_relationships(
        rel_spec("Machine", "HAD_STATE", "MachineState"), [{"start": "M-0", "end": "M-0/s1"}]
    )
    query = """{ timeline(id: "Machine:M-0", until: "2026-11-02T07:30:00+00:00", first: 3) {
        at label key relationship summary } }"""
    events = _post(client, tokens["reader"], query).json()["data"]["timeline"]
    assert [(e["label"], e["key"], e["relationship"]) for e in events] == [
        ("MachineState", "M-0/s1", "HAD_STATE"),
        ("Alarm", "A-1", "RAISED"),
        ("Operation", "1000100/0010", "ON_MACHINE"),
    ]
    assert events[0]["summary"] == "down" and events[1]["summary"] == "SPINDLE_VIB"


def test_an_orders_machine_events_come_from_the_time_it_ran(store: Store) -> None:
    w = BulkWriter(store)
    w.upsert_nodes("Machine", [{"machine_id": "M-W"}])
    w.upsert_nodes("ProductionOrder", [{"order_id": "ORD-W"}])
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=4)  # 08:00-10:00
    w.upsert_nodes("Operation", [{"operation_id": "ORD-W/0010", "actual_start": start,
                                  "actual_end": end}])  # fmt: skip
    w.upsert_relationships(
        rel_spec("ProductionOrder", "HAS_OPERATION", "Operation"),
        [{"start": "ORD-W", "end": "ORD-W/0010"}],
    )
    w.upsert_relationships(
        rel_spec("Operation", "ON_MACHINE", "Machine"), [{"start": "ORD-W/0010", "end": "M-W"}]
    )
    hours = lambda h: T0 + timedelta(hours=h)  # noqa: E731
    alarms = [
        {"alarm_id": "before", "raised_at": hours(0), "cleared_at": hours(1)},
        {"alarm_id": "still-open", "raised_at": hours(1.5)},
        {"alarm_id": "during", "raised_at": hours(3), "cleared_at": hours(3.2)},
        {"alarm_id": "after", "raised_at": hours(5)},
    ]
    states = [
        {"state_id": "s1", "state": "running", "start": hours(0), "end": hours(2.5)},
        {"state_id": "s2", "state": "down", "start": hours(2.5), "end": hours(3)},
        {"state_id": "s3", "state": "running", "start": hours(4.5)},
    ]
    w.upsert_nodes("Alarm", alarms)
    w.upsert_nodes("MachineState", states)
    w.upsert_relationships(
        rel_spec("Machine", "RAISED", "Alarm"),
        [{"start": "M-W", "end": a["alarm_id"]} for a in alarms],
    )
    w.upsert_relationships(
        rel_spec("Machine", "HAD_STATE", "MachineState"),
        [{"start": "M-W", "end": s["state_id"]} for s in states],
    )
    query = """{ productionOrders(filter: {orderId: "ORD-W"}) { nodes {
        alarmsDuring { alarmId } statesDuring { stateId state }
        operations { operationId alarmsDuring { alarmId } } } } }"""
    result = asyncio.run(build_schema().execute(query, context_value=Context(store=store)))
    assert result.errors is None, result.errors
    order = result.data["productionOrders"]["nodes"][0]
    assert [a["alarmId"] for a in order["alarmsDuring"]] == ["still-open", "during"]
    assert order["statesDuring"] == [
        {"stateId": "s1", "state": "running"},
        {"stateId": "s2", "state": "down"},
    ]
    assert order["operations"][0]["alarmsDuring"] == order["alarmsDuring"]


def test_stored_causes_come_back_ranked_with_evidence_and_their_nodes(
    api: tuple, store: Store
) -> None:
    client, tokens = api
    # scrap on M-0's work, and wherever lot L-X went: DEV-1's order ran on M-0 and used L-X
    ops = {i: f"{1000100 + i // 2}/{(i % 2 + 1) * 10:04d}" for i in range(60)}
    with_lot = [ops[1]] + [ops[i] for i in range(5, 30, 6)]  # M-1, then M-2's work
    bad = [op for i, op in ops.items() if i and i % 3 == 0] + with_lot[1:]
    w = BulkWriter(store)
    w.upsert_nodes("MaterialLot", [{"lot_id": "L-X"}])
    w.upsert_relationships(
        rel_spec("MaterialLot", "CONSUMED_BY", "Operation"),
        [{"start": "L-X", "end": op} for op in with_lot],
    )
    w.upsert_nodes(
        "Deviation",
        [{"deviation_id": f"DEV-S-{op}", "deviation_type": "scrap", "start": T0} for op in bad],
    )
    w.upsert_relationships(
        rel_spec("Deviation", "ABOUT", "Operation"),
        [{"start": f"DEV-S-{op}", "end": op} for op in bad],
    )
    analysed = _post(
        client,
        tokens["writer"],
        """mutation { runRootCauseAnalysis(deviationId: "DEV-1") {
            causes { label key score explanation evidence { label key type direction } } } }""",
    ).json()
    assert "errors" not in analysed, analysed
    expected = analysed["data"]["runRootCauseAnalysis"]["causes"]
    assert len(expected) >= 2
    query = """{ deviations(first: 10, filter: {deviationId: "DEV-1"}) { nodes { deviationId
        causes { rank relationship label key score explanation computedAt
                 evidence { label key type direction }
                 node { id ... on Machine { machineId machineType } } } } } }"""
    with _counting(client) as calls:
        body = _post(client, tokens["reader"], query).json()
    assert "errors" not in body, body
    (deviation,) = body["data"]["deviations"]["nodes"]
    stored = deviation["causes"]
    assert [(c["label"], c["key"], c["explanation"]) for c in stored] == [
        (c["label"], c["key"], c["explanation"]) for c in expected
    ]
    assert [c["rank"] for c in stored] == list(range(1, len(stored) + 1))
    assert stored[0]["relationship"] == "CAUSED_BY"
    assert {c["relationship"] for c in stored[1:]} == {"CONTRIBUTED_TO"}
    assert [c["evidence"] for c in stored] == [c["evidence"] for c in expected]
    assert [c["score"] for c in stored] == pytest.approx([c["score"] for c in expected])
    assert stored[0]["computedAt"] is not None
    for cause in stored:
        assert cause["node"]["id"] == f"{cause['label']}:{cause['key']}"
        if cause["label"] == "Machine":
            assert cause["node"]["machineType"] == "mill"
    # the page, then the stored causes with their nodes, whatever their labels
    assert len(calls) == 2, calls

    top = _post(
        client,
        tokens["reader"],
        '{ deviations(filter: {deviationId: "DEV-1"}) { nodes { causes(first: 1) { key } } } }',
    ).json()
    assert top["data"]["deviations"]["nodes"][0]["causes"] == [{"key": stored[0]["key"]}]
    BulkWriter(store).upsert_nodes("Deviation", [{"deviation_id": "DEV-2", "start": T0}])
    never = _post(
        client,
        tokens["reader"],
        '{ node(id: "Deviation:DEV-2") { ... on Deviation { causes { key } } } }',
    ).json()
    assert never["data"]["node"]["causes"] == []


def test_edges_carry_the_relationships_own_properties(api: tuple, store: Store) -> None:
    client, tokens = api
    w = BulkWriter(store)
    w.upsert_nodes("Skill", [{"skill_id": "CNC-MILL"}, {"skill_id": "CMM"}])
    w.upsert_relationships(
        rel_spec("Person", "HAS_SKILL", "Skill"),
        [
            {"start": "00003310", "end": "CNC-MILL", "level": 3, "certified": "yes",
             "valid_until": T0 + timedelta(days=365), "source_system": "skills matrix"},
            {"start": "00003310", "end": "CMM", "level": 1, "certified": "expired"},
        ],
    )  # fmt: skip
    w.upsert_nodes("MaterialLot", [{"lot_id": "RM-1/7731"}])
    w.upsert_relationships(
        rel_spec("MaterialLot", "CONSUMED_BY", "Operation"),
        [
            {"start": "RM-1/7731", "end": f"{1000100 + i}/0010", "quantity": 2.5 * (i + 1),
             "unit": "KG"}
            for i in range(3)
        ],
    )  # fmt: skip
    query = """{
      persons { nodes { personId
        skillsEdges { level certified validUntil sourceSystem node { skillId } } } }
      skills(filter: {skillId: "CNC-MILL"}) { nodes {
        personsHasSkillEdges { level node { name } } } }
      materialLots { nodes { consumedByEdges(first: 2) { quantity unit node { operationId } } } }
      productionOrders(first: 40) { nodes { operations {
        materialLotsConsumedByEdges { quantity node { lotId } } } } }
    }"""
    with _counting(client) as calls:
        body = _post(client, tokens["reader"], query).json()
    assert "errors" not in body, body
    data = body["data"]
    (person,) = data["persons"]["nodes"]
    assert person["skillsEdges"] == [
        {"level": 1, "certified": "expired", "validUntil": None, "sourceSystem": None,
         "node": {"skillId": "CMM"}},
        {"level": 3, "certified": "yes", "validUntil": "2027-11-02T06:00:00+00:00",
         "sourceSystem": "skills matrix", "node": {"skillId": "CNC-MILL"}},
    ]  # fmt: skip
    assert data["skills"]["nodes"] == [
        {"personsHasSkillEdges": [{"level": 3, "node": {"name": "Mira Sahin"}}]}
    ]
    (lot,) = data["materialLots"]["nodes"]
    assert lot["consumedByEdges"] == [
        {"quantity": 2.5, "unit": "KG", "node": {"operationId": "1000100/0010"}},
        {"quantity": 5.0, "unit": "KG", "node": {"operationId": "1000101/0010"}},
    ]
    consumed = [
        edge["quantity"]
        for order in data["productionOrders"]["nodes"]
        for op in order["operations"]
        for edge in op["materialLotsConsumedByEdges"]
    ]
    assert consumed == [2.5, 5.0, 7.5]
    # four root pages, then one query per relationship level: skills, persons, operations
    # consumed, the 80 operations of the 40 orders and their consumed lots
    assert len(calls) == 4 + 5, calls


async def _machine(reads: AsyncStore, key: str) -> dict:  # type: ignore[type-arg]
    return await read.query_nodes_by_key("Machine", [key]).run_async(reads)


def _round_trips(reads: AsyncStore) -> list[str]:
    """The statements ``reads`` sends from now on, one per round trip."""
    trips: list[str] = []
    original = reads.round_trip

    async def counting(query: str, params: dict) -> tuple:  # type: ignore[type-arg]
        trips.append(query)
        return await original(query, params)

    reads.round_trip = counting  # type: ignore[method-assign]
    return trips


def test_reads_asked_together_share_a_round_trip(store: Store) -> None:
    """The API's reads that are asked for together (sibling DataLoaders, other requests in
    flight) go to the store as one statement once each has run alone; each still gets its
    own rows, and a read that fails fails alone."""
    keys = ("M-C", "M-B", "M-A", *(f"M-{n:02d}" for n in range(20, 0, -1)))  # not in key order
    BulkWriter(store).upsert_nodes("Machine", [{"machine_id": m} for m in keys])
    divide = "RETURN 10 / $d AS v"

    async def scenario() -> None:
        reads = AsyncStore(store)
        trips = _round_trips(reads)
        machine = partial(_machine, reads)

        try:
            first = await asyncio.gather(machine("M-A"), machine("M-B"))
            assert len(trips) == 2  # never run before: alone, to learn the columns
            assert [set(found) for found in first] == [{"M-A"}, {"M-B"}]
            trips.clear()
            again = await asyncio.gather(machine("M-C"), machine("nope"))
            assert len(trips) == 1 and "UNION ALL" in trips[0]
            assert [set(found) for found in again] == [{"M-C"}, set()]
            assert again[0]["M-C"]["machine_id"] == "M-C"
            page = read.query_page("Machine", 30)  # ordered by key: the order must survive
            alone = await page.run_async(reads)
            trips.clear()
            together = await asyncio.gather(page.run_async(reads), machine("M-B"))
            assert len(trips) == 1 and together[0] == alone
            assert [m["machine_id"] for m in alone[0]] == sorted(keys)
            trips.clear()  # alone again: its rows come collected in one record, same order
            assert await page.run_async(reads) == alone
            assert len(trips) == 1 and "collect(" in trips[0]
            trips.clear()
            three = await asyncio.gather(machine("M-A"), machine("M-B"), machine("M-C"))
            assert [set(found) for found in three] == [{"M-A"}, {"M-B"}, {"M-C"}]
            assert len(trips) == -(-3 // reads.TOGETHER)  # at most TOGETHER a statement

            async def a_turn_later() -> dict:  # type: ignore[type-arg]
                await asyncio.sleep(0)  # as a loader fed by the same answer asks
                return await machine("M-B")

            trips.clear()
            apart = await asyncio.gather(machine("M-A"), a_turn_later())
            assert [set(found) for found in apart] == [{"M-A"}, {"M-B"}] and len(trips) == 1

            assert await reads.read(divide, d=2) == [{"v": 5}]
            trips.clear()
            results = await asyncio.gather(
                reads.read(divide, d=0), reads.read(divide, d=5), return_exceptions=True
            )
            assert isinstance(results[0], StoreError) and "zero" in str(results[0])
            assert results[1] == [{"v": 2}]
            assert len(trips) == 3  # together, then each alone to tell which one failed
            trips.clear()
            assert await asyncio.gather(machine("M-B"), machine("M-C")) == [
                await machine("M-B"),
                await machine("M-C"),
            ]
            assert sum("UNION ALL" in t for t in trips) == 1  # still combining after that
        finally:
            await reads.close()

    asyncio.run(scenario())


def test_reads_are_answered_even_when_combining_them_fails(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault while building the combined statement must not leave requests waiting for
    ever: each read is then sent alone."""
    from opsgraph.graph import queries

    def broken(reads: tuple) -> str:  # type: ignore[type-arg]
        raise RuntimeError("a bug while combining")

    monkeypatch.setattr(queries, "together", broken)
    BulkWriter(store).upsert_nodes("Machine", [{"machine_id": m} for m in ("M-A", "M-B")])

    async def scenario() -> list[dict]:  # type: ignore[type-arg]
        reads = AsyncStore(store)
        machine = partial(_machine, reads)
        try:
            await asyncio.gather(machine("M-A"), machine("M-B"))  # alone: columns learnt
            return await asyncio.wait_for(asyncio.gather(machine("M-B"), machine("M-A")), 30)
        finally:
            await reads.close()

    assert [set(found) for found in asyncio.run(scenario())] == [{"M-B"}, {"M-A"}]


def test_a_store_that_refuses_combined_reads_gets_them_one_by_one(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose Cypher lacks what the combined statement uses (an older Neo4j without
    ``CALL () {…}``) answers every read alone, and is not asked again."""
    from opsgraph.graph import queries

    monkeypatch.setattr(queries, "together", lambda reads: "THIS IS NOT CYPHER")
    BulkWriter(store).upsert_nodes("Machine", [{"machine_id": m} for m in ("M-A", "M-B")])

    async def scenario() -> None:
        reads = AsyncStore(store)
        trips = _round_trips(reads)
        machine = partial(_machine, reads)

        try:
            await asyncio.gather(machine("M-A"), machine("M-B"))  # alone: columns learnt
            trips.clear()
            found = await asyncio.gather(machine("M-B"), machine("M-A"))
            assert [set(f) for f in found] == [{"M-B"}, {"M-A"}]
            assert trips.count("THIS IS NOT CYPHER") == 1 and len(trips) == 3
            trips.clear()
            await asyncio.gather(machine("M-A"), machine("M-B"))
            assert len(trips) == 2 and "THIS IS NOT CYPHER" not in trips
        finally:
            await reads.close()

    asyncio.run(scenario())


def test_a_read_first_answered_empty_is_combined_with_its_columns(store: Store) -> None:
    """ArcadeDB names no columns when an answer has no rows: a read whose first run found
    nothing must not be combined without its columns (it came back as empty maps: the
    deep query then failed on a deviation with decisions, after a page of deviations
    without any had run first)."""
    BulkWriter(store).upsert_nodes("Machine", [{"machine_id": m} for m in ("M-A", "M-B")])

    async def scenario() -> list[dict]:  # type: ignore[type-arg]
        reads = AsyncStore(store)
        machine = partial(_machine, reads)
        try:
            assert await machine("nope") == {}  # first run: no rows
            await machine("M-B")  # the next run learns the columns
            return await asyncio.gather(machine("M-A"), machine("M-B"))  # combined
        finally:
            await reads.close()

    found = asyncio.run(scenario())
    assert [f[k]["machine_id"] for f, k in zip(found, ("M-A", "M-B"), strict=True)] == [
        "M-A",
        "M-B",
    ]


def test_async_reads_keep_their_sessions_but_not_a_failed_one(store: Store) -> None:
    """Statements one after another reuse one driver session; a statement the store
    rejects has its session closed (a new one serves the next), and nothing is left open."""

    async def scenario() -> None:
        reads = AsyncStore(store)
        opened: list = []  # type: ignore[type-arg]
        session = reads.driver.session

        def counting(**config: object) -> object:
            opened.append(session(**config))
            return opened[-1]

        reads.driver.session = counting  # type: ignore[method-assign]
        try:
            for d in (1, 2, 5):
                assert await reads.read("RETURN 10 / $d AS v", d=d) == [{"v": 10 // d}]
            assert len(opened) == 1
            with pytest.raises(StoreError, match="zero"):
                await reads.read("RETURN 10 / $d AS v", d=0)
            assert await reads.read("RETURN 10 / $d AS v", d=10) == [{"v": 1}]
            # the failed statement's sessions (it is tried combined, then alone) are closed
            assert len(opened) > 1 and all(s.closed() for s in opened[:-1])
            assert not opened[-1].closed()
        finally:
            await reads.close()
        assert all(s.closed() for s in opened)

    asyncio.run(scenario())


def test_keys_are_listed_revoked_and_rotated_while_the_server_runs(
    api: tuple, tmp_path: Path
) -> None:
    """`opsgraph apikey list|revoke|rotate` in another process: the running server refuses a
    revoked or rotated-away key from its next request on and takes the new one at once."""
    from typer.testing import CliRunner

    from opsgraph.api.cli import app as cli

    client, tokens = api
    query = "{ machines(first: 1) { nodes { machineId } } }"
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(cli, ["--home", str(tmp_path), "apikey", *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert _post(client, tokens["reader"], query).status_code == 200
    listed = run("list")
    assert sorted(k["role"] for k in listed) == ["reader", "writer"]
    assert all(token not in json.dumps(listed) for token in tokens.values())
    reader = next(k for k in listed if k["role"] == "reader")
    assert reader["last_used"], "a request records when the key was last used"
    writer = next(k for k in listed if k["role"] == "writer")
    assert writer["last_used"] == ""

    rotated = run("rotate", reader["id"])
    assert rotated["replaces"] == reader["id"] and rotated["role"] == "reader"
    assert _post(client, tokens["reader"], query).status_code == 401
    assert _post(client, rotated["key"], query).status_code == 200

    gone = run("revoke", rotated["id"])
    assert gone["id"] == rotated["id"]
    assert _post(client, rotated["key"], query).status_code == 401
    assert [k["id"] for k in run("list")] == [writer["id"]]

    unknown = runner.invoke(cli, ["--home", str(tmp_path), "apikey", "revoke", "no-such-key"])
    assert unknown.exit_code == 2 and "no API key with ID or name 'no-such-key'" in unknown.output
    ambiguous = ApiKeys(tmp_path)
    ambiguous.create("reader", "twin")
    ambiguous.create("reader", "twin")
    twice = runner.invoke(cli, ["--home", str(tmp_path), "apikey", "revoke", "twin"])
    assert twice.exit_code == 2 and "names 2 keys" in twice.output


def test_api_keys_in_addresses_are_masked_in_access_logs(
    api: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn logs each request's path with its query; a key given as ``api_key`` in the
    address must not reach the log."""
    import logging

    access = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/evidence/DEV-1?api_key=og_secret-value&x=1",
            "1.1",
            200,
        )
    assert "og_secret-value" not in caplog.text
    assert "/evidence/DEV-1?api_key=***&x=1" in caplog.text


def test_client_errors_are_logged_as_one_line(api: tuple, caplog: pytest.LogCaptureFixture) -> None:
    """A reader's mutation or an unknown field is the client's mistake: one log line, no
    traceback; strawberry's own error log (with traceback) stays for unexpected failures."""
    import logging

    client, tokens = api
    about = [{"label": "Deviation", "key": "DEV-1"}]
    with caplog.at_level(logging.INFO):
        _post(client, tokens["reader"], RECORD, {"client": "c-9", "about": about})
        _post(client, tokens["reader"], "{ machines(first: 1) { nodes { noSuchField } } }")
    lines = [r for r in caplog.records if "GraphQL client error" in r.getMessage()]
    assert len(lines) == 2, caplog.text
    assert "recordDecision" in lines[0].getMessage() and "may only read" in lines[0].getMessage()
    assert all(r.exc_info is None for r in lines)
    assert not [r for r in caplog.records if r.name == "strawberry.execution"], caplog.text


def test_production_hides_the_schema_from_probes(api: tuple, store: Store, tmp_path: Path) -> None:
    """--production: no introspection and no "Did you mean …" naming the schema's fields
    (which development keeps, because it helps)."""
    client, tokens = api
    typo = "{ machines(first: 1) { nodes { machineIdd } } }"
    helpful = _post(client, tokens["reader"], typo).json()["errors"][0]["message"]
    assert "Did you mean 'machineId'" in helpful
    with TestClient(create_app(store, Settings(home=tmp_path), production=True)) as hardened:
        message = _post(hardened, tokens["reader"], typo).json()["errors"][0]["message"]
        assert message == "Cannot query field 'machineIdd' on type 'Machine'."
        probe = _post(hardened, tokens["reader"], "{ __schema { types { name } } }").json()
        assert "introspection" in probe["errors"][0]["message"].lower()
        assert hardened.get("/graphql").status_code != 200  # no GraphiQL page either
