"""The MQTT subscriber: a plant's Unified Namespace (and Sparkplug B) loaded as it happens.

Messages are taken with QoS 1 and acknowledged only after the records they map to are
committed (paho's manual acknowledgement), so a store outage or a crash loses nothing: the
subscriber keeps retrying the batch, and what it never acknowledged the broker delivers again
(the writes are idempotent, so a redelivery changes nothing). Messages are committed in small
groups (``linger``), like webhook bodies. Bad payloads go to the dead-letter file and are
acknowledged: a poison message must not block the topic. Lost connections are re-established
with backoff and subscriptions renewed, so a broker restart is survived.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from . import uns
from .runner import IngestReport, IngestRunner, Stream

PASSWORD_VARIABLE = "OPSGRAPH_MQTT_PASSWORD"


class MqttError(RuntimeError):
    """The broker cannot be used (unreachable, credentials refused, bad URL)."""


@dataclass(frozen=True)
class Broker:
    """Where to connect: ``mqtt://user:password@host:1883`` (``mqtts://`` for TLS). The
    password may instead come from ``OPSGRAPH_MQTT_PASSWORD`` to keep it out of ``ps``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise MqttError(f"broker URL {url!r}: use mqtt://host:port or mqtts://host:port")
        if not parts.hostname:
            raise MqttError(f"broker URL {url!r} names no host")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as error:
            raise MqttError(f"broker URL {url!r}: {error}") from None
        password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_VARIABLE)
        username = unquote(parts.username) if parts.username else None
        return cls(parts.hostname, port, username, password, tls)


@dataclass
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: datetime
    connection: int  # acknowledgements belong to the connection that delivered the message


@dataclass
class MqttStats:
    """What the subscriber has done so far (for progress output and tests)."""

    received: int = 0
    committed: int = 0
    acknowledged: int = 0
    rejected: int = 0
    batches: int = 0
    store_failures: int = 0
    connections: int = 0
    last_error: str | None = None


class MqttIngest:
    """Subscribes to ``topics`` on a broker and loads every message through the runner."""

    def __init__(
        self,
        runner: IngestRunner,
        broker: Broker,
        topics: list[str],
        client_id: str = "opsgraph-ingest",
        linger: float = 0.05,
        max_batch: int = 2000,
        on_report: Callable[[IngestReport], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        if not topics:
            raise MqttError("name at least one topic filter, e.g. 'enterprise/site/#'")
        self.runner = runner
        self.broker = broker
        self.topics = topics
        self.linger = linger
        self.max_batch = max_batch
        self.on_report = on_report
        self.on_problem = on_problem or (lambda _: None)
        self.stats = MqttStats()
        self.tracker = uns.Tracker(runner.store)
        self.sparkplug = uns.SparkplugSession()
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._connection = 0
        self._sequence = 0
        # A persistent session (clean_session off) keeps QoS 1 messages for us while we are
        # away, provided the client id stays the same.
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho callbacks (network thread) ------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self._refused = f"broker refused the connection: {reason_code}"
            self.on_problem(self._refused)
            return
        self._connection += 1
        self.stats.connections += 1
        self._refused = None
        for topic in self.topics:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        self._connected.clear()
        if reason_code != 0:
            self.on_problem(f"lost the broker ({reason_code}); reconnecting")

    def _on_message(self, client, userdata, message) -> None:  # noqa: ANN001
        self.stats.received += 1
        self._inbox.put(
            _Message(
                message.topic,
                bytes(message.payload),
                message.mid,
                message.qos,
                datetime.now(UTC),
                self._connection,
            )
        )

    # -- the loop ---------------------------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and subscribe, or say clearly why not."""
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        except OSError as error:
            raise MqttError(
                f"cannot reach the MQTT broker at {self.broker.host}:{self.broker.port}: {error}"
            ) from None
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._connected.is_set():
            if self._refused:
                self.close()
                raise MqttError(self._refused)
            if time.monotonic() > deadline:
                self.close()
                raise MqttError(f"no answer from the MQTT broker within {timeout:g} s")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()  # a clean DISCONNECT while the network loop still runs
        self.client.loop_stop()

    def run(self, stop: threading.Event | None = None) -> MqttStats:
        """Load messages until ``stop`` is set (or forever); returns the statistics."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                first = self._inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            messages = [first]
            deadline = time.monotonic() + self.linger
            while len(messages) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    messages.append(self._inbox.get(timeout=left))
                except queue.Empty:
                    break
            self._load(messages, stop)
        return self.stats

    def _stream(self, message: _Message) -> Stream:
        self._sequence += 1
        name = f"mqtt:{message.topic}#{self._sequence}"
        if message.topic.startswith(uns.SPARKPLUG_NAMESPACE + "/"):
            items = uns.parse_sparkplug_message(
                self.tracker, self.sparkplug, message.topic, message.payload, message.received
            )
            return Stream(name, "sparkplug-b", uns.SPARKPLUG_SOURCE, list(items))
        items = uns.parse_json_message(
            self.tracker, message.topic, message.payload, message.received
        )
        return Stream(name, "uns-json", uns.UNS_SOURCE, list(items))

    def _load(self, messages: list[_Message], stop: threading.Event) -> None:
        """Map, commit (retrying while the store is away), then acknowledge.

        Mapping advances the tracker's open intervals, so each message is mapped exactly
        once; a retry continues with the messages not yet mapped and writes the same rows.
        """
        streams: list[Stream] = []
        delay = 0.5
        while True:
            try:
                while len(streams) < len(messages):  # mapping may read the store
                    streams.append(self._stream(messages[len(streams)]))
                report = self.runner.run_streams(streams)
                break
            except Exception as error:  # the store is down or restarting: keep the messages
                self.stats.store_failures += 1
                self.stats.last_error = str(error)
                self.on_problem(f"store write failed, retrying in {delay:g} s: {error}")
                if stop.wait(delay):
                    return  # unacknowledged: the broker delivers them again
                delay = min(delay * 2, 10.0)
        self.stats.batches += 1
        self.stats.rejected += report.rejected
        self.stats.committed += len(messages)
        for message in messages:
            if message.connection == self._connection and message.qos > 0:
                self.client.ack(message.mid, message.qos)
                self.stats.acknowledged += 1
        if self.on_report is not None:
            self.on_report(report)
