"""The MQTT subscriber against a real Mosquitto broker on loopback: UNS JSON and Sparkplug B
payloads, credentials, bad payloads to dead letters, acknowledgement only after commit (a
store restart mid-stream loses nothing) and reconnection after a broker restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from mqtt_broker import PASSWORD, USER, Mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from tahutils.tahu import sparkplug_b_pb2 as spb

from opsgraph.graph.constraints import apply_schema
from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.ingest.mqtt import Broker, MqttError, MqttIngest
from opsgraph.ingest.runner import IngestRunner

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
PLANT = "acme/dresden/machining/line-2"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path)
    server.start()
    yield server
    server.stop()


class Publisher:
    def __init__(self, broker: Mosquitto) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-publisher")
        self.client.username_pw_set(USER, PASSWORD)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str | dict) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Running:
    """A subscriber loading in a background thread."""

    def __init__(self, ingest: MqttIngest) -> None:
        self.ingest = ingest
        self.stop = threading.Event()
        ingest.connect()
        self.thread = threading.Thread(target=ingest.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def until(self, done: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out; stats {self.ingest.stats}"
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.ingest.close()


def _subscriber(store: Store, tmp_path: Path, broker: Mosquitto, topics: list[str]) -> Running:
    runner = IngestRunner(store, tmp_path / "state")
    return Running(MqttIngest(runner, Broker.parse(broker.url), topics, client_id="og-test"))


def _at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_uns_messages_build_the_hierarchy_states_alarms_and_deviations(
    store: Store, tmp_path: Path, broker: Mosquitto
) -> None:
    running = _subscriber(store, tmp_path, broker, ["acme/#"])
    publisher = Publisher(broker)
    try:
        machine = f"{PLANT}/M-101"
        publisher.send(f"{machine}/execution", {"value": "ACTIVE", "timestamp": _at(0)})
        publisher.send(f"{machine}/execution", {"value": "STOPPED", "timestamp": _at(10)})
        publisher.send(f"{machine}/alarm", {"code": "2001", "level": "Fault", "timestamp": _at(11)})
        publisher.send(
            f"{machine}/spindle/temperature",
            {"value": 71.5, "unit": "C", "upper_limit": 65, "timestamp": _at(12)},
        )
        publisher.send(
            f"{machine}/alarm", {"code": "2001", "level": "Normal", "timestamp": _at(25)}
        )
        # epoch milliseconds are accepted as well as ISO 8601
        ms = int((T0 + timedelta(minutes=40)).timestamp() * 1000)
        publisher.send(f"{machine}/execution", {"value": "ACTIVE", "timestamp": ms})
        publisher.send(f"{machine}/execution", b"not json {")
        publisher.send("acme/dresden/too-short", {"value": 1})
        publisher.send(f"{machine}/spindle/load", {"value": "high", "timestamp": _at(41)})
        publisher.send(f"{machine}/spindle/load", b"55.5")  # a bare value, received now
        running.until(lambda: running.ingest.stats.committed == 10)
    finally:
        publisher.close()
        running.close()

    assert running.ingest.stats.acknowledged == 10
    path = store.read(
        "MATCH (s:Site {site_id: 'dresden'})-[:HAS_AREA]->(:Area {area_id: 'machining'})"
        "-[:HAS_LINE]->(:Line {line_id: 'line-2'})"
        "-[:HAS_MACHINE]->(m:Machine {machine_id: 'M-101'})"
        " RETURN count(m) AS n"
    )
    assert path == [{"n": 1}]
    states = store.read(
        "MATCH (:Machine {machine_id: 'M-101'})-[:HAD_STATE]->(s:MachineState) "
        "RETURN s.state AS state, s.duration_s AS seconds, s.reason_code AS reason "
        "ORDER BY s.start"
    )
    assert states == [
        {"state": "running", "seconds": 600.0, "reason": "ACTIVE"},
        {"state": "down", "seconds": 1800.0, "reason": "STOPPED"},
        {"state": "running", "seconds": None, "reason": "ACTIVE"},
    ]
    # the 30-minute stop crossed the downtime threshold: the scoped rules found it at once
    downtime = store.read(
        "MATCH (d:Deviation {deviation_type: 'downtime'})"
        "-[:ABOUT]->(:Machine {machine_id: 'M-101'})"
        " RETURN d.severity AS severity"
    )
    assert downtime == [{"severity": "medium"}]
    alarm = store.read(
        "MATCH (:Machine {machine_id: 'M-101'})-[:RAISED]->(a:Alarm) "
        "RETURN a.code AS code, a.level AS level, a.cleared_at IS NOT NULL AS cleared"
    )
    assert alarm == [{"code": "2001", "level": "Fault", "cleared": True}]
    reading = store.read(
        "MATCH (:Machine {machine_id: 'M-101'})-[:MEASURED]->(r:ProcessReading) "
        "RETURN r.parameter AS parameter, r.value AS value, r.out_of_spec AS out "
        "ORDER BY parameter"
    )
    assert reading == [
        {"parameter": "spindle/load", "value": 55.5, "out": None},
        {"parameter": "spindle/temperature", "value": 71.5, "out": True},
    ]
    letters = [
        json.loads(line)
        for f in (tmp_path / "state" / "dead-letters").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 3
    assert reasons[0] == "spindle/load: a reading must be a number, got 'high'"
    assert reasons[1] == "topic must be enterprise/site/area/line/machine/<tag> (ISA-95 levels)"
    assert reasons[2].startswith("unknown execution value 'not json {'; known: running")


def _sparkplug(
    timestamp: datetime, metrics: list[tuple[str | None, int | None, int, object]]
) -> bytes:
    payload = spb.Payload()
    payload.timestamp = int(timestamp.timestamp() * 1000)
    payload.seq = 0
    for name, alias, datatype, value in metrics:
        metric = payload.metrics.add()
        if name:
            metric.name = name
        if alias is not None:
            metric.alias = alias
        metric.datatype = datatype
        if isinstance(value, bool):
            metric.boolean_value = value
        elif isinstance(value, str):
            metric.string_value = value
        elif isinstance(value, float):
            metric.double_value = value
    return payload.SerializeToString()


def test_sparkplug_b_births_aliases_data_and_death(
    store: Store, tmp_path: Path, broker: Mosquitto
) -> None:
    string, double, boolean = 12, 10, 11
    running = _subscriber(store, tmp_path, broker, ["spBv1.0/#"])
    publisher = Publisher(broker)
    base = "spBv1.0/dresden/{}/edge-1/M-202"
    try:
        birth = _sparkplug(
            T0,
            [
                ("Execution", 1, string, "ACTIVE"),
                ("Spindle/Speed", 2, double, 11800.0),
                ("Alarms/OVERTEMP", 3, boolean, False),
            ],
        )
        publisher.send(base.format("DBIRTH"), birth)
        # data by alias only, as Sparkplug edge nodes send it
        publisher.send(
            base.format("DDATA"),
            _sparkplug(
                T0 + timedelta(minutes=5), [(None, 2, double, 12400.0), (None, 3, boolean, True)]
            ),
        )
        publisher.send(base.format("DDATA"), _sparkplug(T0, [(None, 99, double, 1.0)]))
        publisher.send(base.format("DDATA"), b"\xff\x00 not protobuf")
        publisher.send(base.format("DDEATH"), _sparkplug(T0 + timedelta(minutes=30), []))
        running.until(lambda: running.ingest.stats.committed == 5)
    finally:
        publisher.close()
        running.close()

    assert store.read(
        "MATCH (:Site {site_id: 'dresden'}), (:Line {line_id: 'edge-1'})-[:HAS_MACHINE]->"
        "(m:Machine {machine_id: 'M-202'}) RETURN count(m) AS n"
    ) == [{"n": 1}]
    speeds = store.read(
        "MATCH (:Machine {machine_id: 'M-202'})-[:MEASURED]->(r:ProcessReading) "
        "RETURN r.parameter AS p, r.value AS v ORDER BY r.measured_at"
    )
    assert speeds == [{"p": "Spindle/Speed", "v": 11800.0}, {"p": "Spindle/Speed", "v": 12400.0}]
    alarms = store.read(
        "MATCH (:Machine {machine_id: 'M-202'})-[:RAISED]->(a:Alarm) RETURN a.code AS code"
    )
    assert alarms == [{"code": "OVERTEMP"}]
    states = store.read(
        "MATCH (:Machine {machine_id: 'M-202'})-[:HAD_STATE]->(s:MachineState) "
        "RETURN s.state AS state ORDER BY s.start"
    )
    assert states == [{"state": "running"}, {"state": "unavailable"}]
    assert running.ingest.stats.rejected == 2  # the undeclared alias and the broken payload


def test_wrong_credentials_and_unreachable_brokers_are_clear_errors(
    store: Store, tmp_path: Path, broker: Mosquitto
) -> None:
    runner = IngestRunner(store, tmp_path / "state")
    wrong = Broker("127.0.0.1", broker.port, USER, "wrong")
    with pytest.raises(MqttError, match="refused"):
        MqttIngest(runner, wrong, ["acme/#"], client_id="og-wrong").connect(timeout=5)
    broker.stop()
    with pytest.raises(MqttError, match="cannot reach the MQTT broker"):
        MqttIngest(runner, Broker.parse(broker.url), ["acme/#"]).connect(timeout=5)
    with pytest.raises(MqttError, match="use mqtt://"):
        Broker.parse("http://127.0.0.1:1883")


def test_a_broker_restart_is_survived(store: Store, tmp_path: Path, broker: Mosquitto) -> None:
    running = _subscriber(store, tmp_path, broker, ["acme/#"])
    try:
        publisher = Publisher(broker)
        publisher.send(f"{PLANT}/M-301/spindle/load", {"value": 40.0, "timestamp": _at(0)})
        publisher.close()
        running.until(lambda: running.ingest.stats.committed == 1)
        broker.stop()
        broker.start()
        running.until(lambda: running.ingest.stats.connections >= 2)
        publisher = Publisher(broker)
        publisher.send(f"{PLANT}/M-301/spindle/load", {"value": 42.0, "timestamp": _at(1)})
        publisher.close()
        running.until(lambda: running.ingest.stats.committed == 2)
    finally:
        running.close()
    values = store.read(
        "MATCH (:Machine {machine_id: 'M-301'})-[:MEASURED]->(r) RETURN r.value AS v ORDER BY v"
    )
    assert values == [{"v": 40.0}, {"v": 42.0}]


def test_nothing_is_lost_when_the_store_restarts_mid_stream(
    tmp_path: Path, broker: Mosquitto, settings: Settings
) -> None:
    if not settings.embedded:
        pytest.skip("restarts an embedded store of its own")
    own = Settings(home=tmp_path / "own-store")
    server = EmbeddedServer(own)
    server.start()
    store = Store.open(own)
    try:
        apply_schema(store)
        running = _subscriber(store, tmp_path, broker, ["acme/#"])
        publisher = Publisher(broker)
        try:
            for minute in range(10):
                publisher.send(
                    f"{PLANT}/M-401/spindle/load", {"value": minute, "timestamp": _at(minute)}
                )
            running.until(lambda: running.ingest.stats.committed == 10)
            server.stop()
            for minute in range(10, 20):  # published while the store is down
                publisher.send(
                    f"{PLANT}/M-401/spindle/load", {"value": minute, "timestamp": _at(minute)}
                )
            running.until(lambda: running.ingest.stats.store_failures > 0)
            assert running.ingest.stats.committed == 10  # nothing acknowledged meanwhile
            server.start()
            running.until(lambda: running.ingest.stats.committed == 20, timeout=120)
        finally:
            publisher.close()
            running.close()
        count = store.read(
            "MATCH (:Machine {machine_id: 'M-401'})-[:MEASURED]->(r) RETURN count(r) AS n"
        )
        assert count == [{"n": 20}]
    finally:
        store.close()
        server.stop()


def test_the_command_line_subscribes_until_interrupted(
    store: Store, settings: Settings, broker: Mosquitto
) -> None:
    command = [sys.executable, "-c", "from opsgraph.api.cli import main; main()"]
    command += [] if settings.uri else ["--home", str(settings.home)]
    refused = subprocess.run(
        [*command, "ingest", "--mqtt", f"mqtt://{USER}:nope@127.0.0.1:{broker.port}",
         "--topic", "acme/#"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "refused" in refused.stderr
    process = subprocess.Popen(
        [*command, "ingest", "--mqtt", broker.url, "--topic", "acme/#", "--client-id", "og-cli"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        assert "subscribed to acme/#" in process.stdout.readline()
        publisher = Publisher(broker)
        publisher.send(f"{PLANT}/M-501/spindle/load", {"value": 55.0, "timestamp": _at(0)})
        publisher.close()
        query = "MATCH (:Machine {machine_id: 'M-501'})-[:MEASURED]->(r) RETURN r.value AS v"
        while not store.read(query):
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0
