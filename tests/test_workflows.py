"""Workflows: rules fire once per triggering event, pick the right person on shift, attach the
evidence, export to a folder and a webhook (with retries and dead letters), and close the loop
when the action comes back complete with a decision and its outcome."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_live_ingest import quality_check
from test_rca import T0, _plant
from test_risk import AS_OF
from typer.testing import CliRunner

from opsgraph.api.app import ApiKeys, create_app
from opsgraph.api.cli import app
from opsgraph.api.graphql import Context, build_schema
from opsgraph.graph import decisions, identity
from opsgraph.graph.identity import Alias
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.graph.workflows import WorkflowEngine, WorkflowError, file_name, parse_workflows
from opsgraph.graph.writer import BulkWriter
from opsgraph.ingest.runner import IngestRunner
from opsgraph.schema import rel_spec

BAD_RUNS = [2, 3, 6, 9, 10]
SHIFT_DAY = T0 + timedelta(days=9)  # run 9 (a bad one) falls into the only shift


def _crew(store: Store) -> None:
    """Line L-A holds both mills; one shift on day 9 with an operator who has the milling
    skill, one whose certificate has expired and a quality engineer; a better-skilled
    operator works another day."""
    w = BulkWriter(store)
    w.upsert_nodes("Line", [{"line_id": "L-A"}])
    w.upsert_relationships(
        rel_spec("Line", "HAS_MACHINE", "Machine"),
        [{"start": "L-A", "end": "M1"}, {"start": "L-A", "end": "M2"}],
    )
    w.upsert_nodes(
        "Shift",
        [{"shift_id": "S-9", "start": SHIFT_DAY, "end": SHIFT_DAY + timedelta(hours=12)}],
    )
    w.upsert_relationships(rel_spec("Shift", "ON_LINE", "Line"), [{"start": "S-9", "end": "L-A"}])
    people = [
        ("P-1", "machine operator"),
        ("P-2", "machine operator"),
        ("P-3", "quality engineer"),
        ("P-4", "machine operator"),
    ]
    w.upsert_nodes("Person", [{"person_id": p, "role": role} for p, role in people])
    w.upsert_nodes("Skill", [{"skill_id": "MILL"}])
    w.upsert_relationships(
        rel_spec("Person", "HAS_SKILL", "Skill"),
        [
            {"start": "P-1", "end": "MILL", "level": 2, "certified": "yes"},
            {"start": "P-2", "end": "MILL", "level": 4, "certified": "expired"},
            {"start": "P-4", "end": "MILL", "level": 5, "certified": "yes"},
        ],
    )
    w.upsert_relationships(
        rel_spec("Person", "WORKED", "Shift"),
        [{"start": p, "end": "S-9"} for p in ("P-1", "P-2", "P-3")],
    )


RULES = """
workflows:
  - name: scrap-to-setter
    when:
      deviation: {type: scrap, severity: [high, critical], line: L-A}
    then:
      title: "Investigate {type} on {machine} ({deviation})"
      assign: {skill: MILL, role: machine operator}
      due_hours: 4
      priority: high
      attach: {causes: 2}
      export: {safetyculture_dir: outbox, webhook: "WEBHOOK", retries: 2}
"""


class Receiver:
    """A loopback HTTP endpoint standing in for the worker platform; fails the first call."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                receiver.calls += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.calls == 1:
                    self.send_response(503)
                else:
                    receiver.bodies.append(json.loads(body))
                    self.send_response(201)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/actions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    yield served
    served.close()


def _engine(store: Store, tmp_path: Path, rules: str) -> WorkflowEngine:
    return WorkflowEngine(store, parse_workflows(rules, tmp_path), tmp_path, retry_delay=0.01)


def test_a_rule_fires_once_per_deviation_for_the_right_person(
    store: Store, tmp_path: Path, receiver: Receiver
) -> None:
    _plant(store, bad_runs=BAD_RUNS)
    _crew(store)
    engine = _engine(store, tmp_path, RULES.replace("WEBHOOK", receiver.url))
    report = engine.run()
    fired = {f.subject: f for f in report.fired}
    assert sorted(fired) == [f"DEV-SCRAP-100{i:02d}/0010" for i in BAD_RUNS]
    on_shift = fired["DEV-SCRAP-10009/0010"]
    # P-2 has the better level but an expired certificate; P-3 is not an operator
    assert on_shift.assignee == "P-1" and on_shift.assigned_because.startswith("on shift on L-A")
    # no shift recorded on the other days: the best qualified operator anywhere
    assert fired["DEV-SCRAP-10002/0010"].assignee == "P-4"
    action = store.read(
        "MATCH (a:Action {action_id: 'WF-scrap-to-setter-DEV-SCRAP-10009/0010'})"
        "-[:ABOUT]->(d:Deviation) MATCH (a)-[:ASSIGNED_TO]->(p:Person) "
        "RETURN a.title AS title, a.description AS text, a.priority AS priority, "
        "a.status AS status, d.deviation_id AS deviation, p.person_id AS person"
    )[0]
    assert action["title"] == "Investigate scrap on M1 (DEV-SCRAP-10009/0010)"
    assert "Likely causes:" in action["text"] and "L-BAD" in action["text"]
    assert (action["priority"], action["status"], action["person"]) == ("high", "to_do", "P-1")
    # exported: a SafetyCulture-style file each, and each POSTed once (one retry after a 503)
    files = sorted((tmp_path / "outbox").glob("*.json"))
    assert len(files) == 5
    exported = json.loads(
        (tmp_path / "outbox" / f"{file_name(on_shift.action_id)}.json").read_text()
    )
    assert exported["collaborators"] == [
        {"collaborator_id": "P-1", "collaborator_type": "USER", "assigned_role": "ASSIGNEE"}
    ]
    assert exported["asset_id"] == "M1" and exported["task_id"] == on_shift.action_id
    assert sorted(b["task_id"] for b in receiver.bodies) == sorted(
        f.action_id for f in fired.values()
    )
    assert receiver.calls == 6 and not report.export_failures
    # a second pass (and a pass over new deviations only) fires nothing again
    again = engine.run()
    assert again.fired == [] and again.already == 5
    assert engine.run(deviation_ids=["DEV-SCRAP-10009/0010"]).fired == []
    assert receiver.calls == 6
    count = store.read("MATCH (a:Action) WHERE a.workflow IS NOT NULL RETURN count(a) AS n")
    assert count == [{"n": 5}]


def test_an_unreachable_webhook_ends_in_the_dead_letter_file(store: Store, tmp_path: Path) -> None:
    _plant(store, bad_runs=[9])
    _crew(store)
    rules = RULES.replace("WEBHOOK", "http://127.0.0.1:9/actions")
    report = _engine(store, tmp_path, rules).run()
    assert len(report.fired) == 1 and len(report.export_failures) == 1
    letters = (tmp_path / "workflows" / "dead-letters.jsonl").read_text().splitlines()
    letter = json.loads(letters[0])
    assert letter["action"] == "WF-scrap-to-setter-DEV-SCRAP-10009/0010"
    assert letter["url"] == "http://127.0.0.1:9/actions" and letter["payload"]["title"]


def test_a_completed_action_with_a_decision_closes_the_loop(store: Store, tmp_path: Path) -> None:
    _plant(store, bad_runs=[9])
    _crew(store)
    rules = RULES.replace(', webhook: "WEBHOOK", retries: 2', "")
    engine = _engine(store, tmp_path, rules)
    action = engine.run().fired[0].action_id
    # the worker platform reports the action done (its actions feed, as ingest reads it)
    feed = tmp_path / "feed_actions.json"
    row = {"id": action, "title": "done", "priority": "HIGH", "status": "COMPLETE",
           "completed_at": "2026-10-15T10:00:00.000Z"}  # fmt: skip
    feed.write_text(json.dumps({"metadata": {"next_page": None}, "data": [row]}))
    assert IngestRunner(store, tmp_path / "state").run([feed], rules=False).rejected == 0
    recorded = decisions.record_decision(
        store, "dec-1", "P-1", "hold", "Quarantine lot L-BAD", [], action_id=action
    )
    assert engine.run().closed == []  # no outcome yet
    decisions.record_outcome(store, recorded.decision_id, "effective", "no scrap since")
    assert engine.run().closed == ["DEV-SCRAP-10009/0010"]
    linked = store.read(
        "MATCH (d:Deviation {deviation_id: 'DEV-SCRAP-10009/0010'})<-[:ABOUT]-(:Decision)"
        "-[:HAS_OUTCOME]->(o:Outcome) RETURN d.status AS status, o.result AS result"
    )
    assert linked == [{"status": "closed", "result": "effective"}]
    # and the action, its assignee and its decision are in the API
    query = """{ actions(filter: {workflow: "scrap-to-setter"}) { nodes {
        actionId status assignees { personId } decision { decisionId } } } }"""
    result = asyncio.run(build_schema().execute(query, context_value=Context(store=store)))
    assert result.errors is None, result.errors
    assert result.data["actions"]["nodes"] == [
        {
            "actionId": action,
            "status": "complete",
            "assignees": [{"personId": "P-1"}],
            "decision": [{"decisionId": recorded.decision_id}],
        }
    ]


def test_a_risk_rule_routes_orders_at_risk(store: Store, tmp_path: Path) -> None:
    _plant(store, bad_runs=BAD_RUNS)
    _crew(store)
    rules = """
workflows:
  - name: risky
    when: {risk: {above: 0.3, horizon_days: 7}}
    then: {title: "Check {order} (risk {risk}) on {machine}", assign: {role: quality engineer}}
"""
    report = _engine(store, tmp_path, rules).run(as_of=AS_OF)
    subjects = {f.subject for f in report.fired}
    assert {"10009/0010", "10010/0010"} <= subjects  # the upcoming runs on lot L-BAD
    assert all(f.assignee == "P-3" for f in report.fired)
    text = store.read(
        "MATCH (a:Action {action_id: 'WF-risky-10009/0010'}) RETURN a.description AS text"
    )[0]["text"]
    assert "MaterialLot L-BAD" in text


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("workflows: [{name: a, when: {deviation: {}}}]", "name the deviation type"),
        ("workflows: [{name: a, when: {weather: {}}}]", "exactly one of deviation, risk"),
        (
            "workflows: [{name: a, when: {deviation: {type: scrap}}, then: {priority: urgent}}]",
            "priority is one of",
        ),
        (
            "workflows: [{name: a, when: {deviation: {type: scrap}}, then: {title: '{who}'}}]",
            "placeholder 'who' unknown",
        ),
        (
            "workflows: [{name: a, when: {deviation: {type: scrap}}, then: {asign: {}}}]",
            r"unknown then field\(s\) asign",
        ),
        ("workflows: [{name: 'a b', when: {risk: {}}}]", "names are letters"),
        ("rules: []", "top-level 'workflows:'"),
        ("workflows: [", "not valid YAML"),
    ],
)
def test_bad_rules_files_are_refused_with_the_reason(rules: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        parse_workflows(rules)


def test_the_command_line_checks_and_runs_a_rules_file(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    _plant(store, bad_runs=BAD_RUNS)
    _crew(store)
    home = [] if settings.uri else ["--home", str(settings.home)]
    good = tmp_path / "rules.yaml"
    good.write_text(RULES.replace(', webhook: "WEBHOOK", retries: 2', ""))
    checked = CliRunner().invoke(app, [*home, "workflows", "check", str(good)])
    assert checked.exit_code == 0 and "scrap-to-setter: when deviation scrap" in checked.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "workflows: [{name: x, when: {deviation: {type: scrap}}, then: {due_hours: -1}}]"
    )
    refused = CliRunner().invoke(app, [*home, "workflows", "check", str(bad)])
    assert refused.exit_code == 2 and "due_hours must be a number >= 0" in refused.output
    ran = CliRunner().invoke(app, [*home, "workflows", "run", str(good), "--json"])
    assert ran.exit_code == 0, ran.output
    assert len(json.loads(ran.stdout)["fired"]) == 5
    again = CliRunner().invoke(app, [*home, "workflows", "run", str(good), "--json"])
    assert json.loads(again.stdout)["already_fired"] == 5


def test_deviations_posted_to_the_webhook_go_through_the_rules(
    store: Store, tmp_path: Path
) -> None:
    BulkWriter(store).upsert_nodes("Person", [{"person_id": "QE-1", "role": "quality engineer"}])
    rules = """
workflows:
  - name: oos
    when: {deviation: {type: out_of_spec}}
    then: {title: "Check {description}", assign: {role: quality engineer}}
"""
    writer = ApiKeys(tmp_path).create("writer", "mes")
    app_ = create_app(store, Settings(home=tmp_path), workflows=parse_workflows(rules))
    body = quality_check("QC-WF-1", 42.031)
    posted = TestClient(app_).post(
        "/ingest",
        params={"filename": "quality_checks.csv"},
        content=body,
        headers={"Authorization": f"Bearer {writer}"},
    )
    assert posted.status_code == 200, posted.text
    query = (
        "MATCH (a:Action {action_id: 'WF-oos-DEV-QC-WF-1'})-[:ASSIGNED_TO]->(p:Person) "
        "RETURN p.person_id AS person"
    )
    deadline = time.monotonic() + 30  # the rules run right after the commit is answered
    while not (found := store.read(query)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert found == [{"person": "QE-1"}]


def test_exports_name_the_assignee_and_asset_by_their_safetyculture_ids(
    store: Store, tmp_path: Path, receiver: Receiver
) -> None:
    _plant(store, bad_runs=BAD_RUNS)
    _crew(store)
    identity.declare(
        store,
        [
            Alias("Person", "user_5c1e0b8f", "P-1", "safetyculture"),
            Alias("Machine", "MILL-1", "M1"),  # another system's tag: not SafetyCulture's
            Alias("Machine", "asset_91f2", "M1", "SafetyCulture"),
        ],
        "test",
    )
    report = _engine(store, tmp_path, RULES.replace("WEBHOOK", receiver.url)).run()
    on_shift = next(f for f in report.fired if f.subject == "DEV-SCRAP-10009/0010")
    exported = json.loads(
        (tmp_path / "outbox" / f"{file_name(on_shift.action_id)}.json").read_text()
    )
    assert exported["collaborators"][0]["collaborator_id"] == "user_5c1e0b8f"
    assert exported["asset_id"] == "asset_91f2"
    # the graph keeps our keys: the action is assigned to P-1
    assert on_shift.assignee == "P-1"
