"""One settings object for the store, read from the environment and overridable by the CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

EMBEDDED_DATABASE = "opsgraph"


@dataclass(frozen=True)
class Settings:
    """Where the graph lives.

    With no ``uri`` opsgraph runs its own embedded ArcadeDB under ``home``; with a URI
    (``bolt://``, ``neo4j://`` routing, ``neo4j+s://`` …) it talks to that Neo4j instead,
    through the same driver and the same Cypher.
    """

    uri: str | None = None
    user: str = "neo4j"
    password: str | None = None
    database: str | None = None
    home: Path = Path.home() / ".opsgraph"
    bolt_port: int | None = None
    http_port: int | None = None
    # Which ArcadeDB package the embedded store runs on when several are installed
    # ("arcadedb-jvm" or "arcadedb-embedded"); None = arcadedb-jvm if installed.
    store_package: str | None = None
    # Webhook bodies with rejected records stay in $OPSGRAPH_HOME/inbox for replay
    # (`ingest --retry-dead-letters`) this many days; bodies that loaded whole go at once.
    inbox_days: float = 14.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``OPSGRAPH_*`` variables; keyword overrides that are not None win."""
        env = os.environ if env is None else env

        def port(name: str) -> int | None:
            value = env.get(name)
            if not value:
                return None
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise ValueError(f"{name}={value!r} is not a TCP port number")
            return int(value)

        def days(name: str, default: float) -> float:  # a number of days, never negative
            value = env.get(name)
            try:
                return default if not value else max(0.0, float(value))
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number of days") from None

        settings = cls(
            uri=env.get("OPSGRAPH_URI") or None,
            user=env.get("OPSGRAPH_USER") or "neo4j",
            password=env.get("OPSGRAPH_PASSWORD") or None,
            database=env.get("OPSGRAPH_DATABASE") or None,
            home=Path(env.get("OPSGRAPH_HOME") or Path.home() / ".opsgraph").expanduser(),
            bolt_port=port("OPSGRAPH_BOLT_PORT"),
            http_port=port("OPSGRAPH_HTTP_PORT"),
            store_package=env.get("OPSGRAPH_STORE_PACKAGE") or None,
            inbox_days=days("OPSGRAPH_INBOX_DAYS", cls.inbox_days),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    def to_env(self) -> dict[str, str]:
        """These settings as ``OPSGRAPH_*`` variables, for child processes (API workers)
        that read them back with :meth:`from_env` (the environment keeps the password out of
        their command lines)."""
        values = {
            "OPSGRAPH_URI": self.uri,
            "OPSGRAPH_USER": self.user,
            "OPSGRAPH_PASSWORD": self.password,
            "OPSGRAPH_DATABASE": self.database,
            "OPSGRAPH_HOME": str(self.home),
            "OPSGRAPH_BOLT_PORT": self.bolt_port,
            "OPSGRAPH_HTTP_PORT": self.http_port,
            "OPSGRAPH_STORE_PACKAGE": self.store_package,
            "OPSGRAPH_INBOX_DAYS": self.inbox_days,
        }
        return {name: str(value) for name, value in values.items() if value is not None}

    @property
    def embedded(self) -> bool:
        return self.uri is None

    @property
    def database_name(self) -> str | None:
        """The database sessions use: ours on the embedded store, the server default on Neo4j."""
        if self.database:
            return self.database
        return EMBEDDED_DATABASE if self.embedded else None
