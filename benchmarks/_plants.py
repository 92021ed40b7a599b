"""Shared by the RCA benchmarks: a throw-away (or, with ``cache``, kept) embedded store holding
one database per demo plant, generated and ingested once."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from opsgraph.graph.constraints import apply_schema
from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.identity import Aliases
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.ingest.demo import VARIANTS, generate
from opsgraph.ingest.runner import IngestRunner


class DemoPlants:
    def __init__(self, cache: Path | None = None) -> None:
        self.home = cache or Path(tempfile.mkdtemp(prefix="opsgraph-rca-bench-"))
        self.servers: list[EmbeddedServer] = []

    def load(
        self, seed: int, scale: float, weeks: int = 6, variants: Iterable[str] = ()
    ) -> tuple[Store, dict[str, Any]]:
        """A store with the plant loaded, and its ground truth (a kept plant is reused)."""
        name = self.database(seed, scale, weeks, variants)
        store = self._plant(
            name, lambda out: generate(out, seed=seed, scale=scale, weeks=weeks, variants=variants)
        )
        return store, json.loads((self.home / name / "ground_truth.json").read_text())

    def load_foreign(self, seed: int, weeks: int = 6) -> tuple[Store, dict[str, Any]]:
        """A plant from ``foreign_plant.py`` (a generator written apart from opsgraph's, with
        its own cause mechanisms), loaded like a demo plant."""
        from foreign_plant import generate as generate_foreign

        name = f"foreign_seed{seed}_w{weeks}"
        store = self._plant(name, lambda out: generate_foreign(out, seed=seed, weeks=weeks))
        truth = json.loads((self.home / name / "ground_truth.json").read_text())
        for cause in truth["causes"]:  # a bad fixture is the same fault at every remount
            later = cause.get("parameters", {}).get("later_setups", [])
            cause["also"] = [[cause["label"], key] for key in later]
        return store, truth

    def _plant(self, name: str, write: Callable[[Path], object]) -> Store:
        """The store of one plant's database, written and loaded the first time it is asked
        for (the generator writes erp/, mes/, worker/, ground_truth.json, maybe aliases)."""
        settings = Settings(home=self.home, database=name)
        server = EmbeddedServer(settings)
        server.start()
        self.servers.append(server)
        out = self.home / name
        store = Store.open(settings)
        if not (out / "loaded").exists():
            write(out)
            apply_schema(store)
            aliases = out / "aliases.toml"
            runner = IngestRunner(
                store, out / "state", aliases=Aliases.load(aliases if aliases.exists() else None)
            )
            report = runner.run([out / "erp", out / "mes", out / "worker"])
            assert report.rejected == 0, report.dead_letters
            (out / "loaded").write_text("")
        return store

    @staticmethod
    def database(seed: int, scale: float, weeks: int = 6, variants: Iterable[str] = ()) -> str:
        """The database a plant is loaded into."""
        code = "".join(f"{list(VARIANTS).index(v):x}" for v in sorted(set(variants))) or "base"
        return f"seed{seed}_scale{str(scale).replace('.', '_')}_w{weeks}_{code}"

    def close(self) -> None:
        if self.servers:
            self.servers[0].stop()
