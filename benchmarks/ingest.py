"""End-to-end ingest throughput on the demo plant, next to the writer alone.

    python benchmarks/ingest.py [--scale 25] [--seed 1]

Generates the demo plant (scale 25 is about 216,000 source records), then in one run on a
throw-away embedded ArcadeDB:

1. parses every file without writing (parser speed);
2. ingests end to end into an empty database (parse + map + write + deviation rules) on
   the freshly started store;
3. writes the same records, parsed beforehand, into a second empty database (the writer
   alone);
4. ingests end to end again, into a third, now that the store's JVM has compiled its hot
   code (a running server), and prints the ratio of (4) to (3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from opsgraph.graph.constraints import apply_schema
from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.identity import Aliases
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.ingest.demo import generate
from opsgraph.ingest.runner import IngestReport, IngestRunner, SourceFormat, expand


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="opsgraph-ingest-bench-"))
    plant = home / "plant"
    started = time.perf_counter()
    truth = generate(plant, seed=args.seed, scale=args.scale)
    sources = [plant / "erp", plant / "mes", plant / "worker"]
    files = expand(sources)
    size = sum(f.stat().st_size for f in files) / 1e6
    print(f"demo plant: scale {args.scale:g}, {truth['orders']} orders, {len(files)} files, "
          f"{size:.0f} MB, generated in {time.perf_counter() - started:.1f} s")  # fmt: skip

    aliases = Aliases.load(plant / "aliases.toml")
    server = EmbeddedServer(Settings(home=home, database="parse"))
    server.start()

    def ingest(database: str, parsed: dict[Path, list] | None = None) -> IngestReport:
        """One run into an empty database; with ``parsed``, the parsers are replaced by
        the records they produced beforehand (the writer alone)."""
        settings = Settings(home=home, database=database)
        EmbeddedServer(settings).start()
        with Store.open(settings) as store:
            apply_schema(store)
            runner = IngestRunner(store, home / f"state-{database}", aliases=aliases)
            if parsed is not None:
                runner.formats = [
                    SourceFormat(f.name, f.rank, lambda path: iter(parsed[path]), f.source_system)
                    for f in runner.formats
                ]
            return runner.run(sources)

    def show(name: str, report: IngestReport) -> float:
        rate = report.records / report.seconds
        print(f"{name:<26} {report.records:>8} records {report.seconds:7.1f} s "
              f"{rate:>9,.0f} records/s")  # fmt: skip
        return rate

    try:
        with Store.open(Settings(home=home, database="parse")) as store:
            runner = IngestRunner(store, home / "state-parse", aliases=aliases)
            started = time.perf_counter()
            parsed = {}
            for path in files:
                fmt, _ = runner.detect(path)
                parsed[path] = list(fmt.parse(path))
            parse_seconds = time.perf_counter() - started
        records = sum(len(items) for items in parsed.values())
        print(f"{'parse only':<26} {records:>8} records {parse_seconds:7.1f} s "
              f"{records / parse_seconds:>9,.0f} records/s")  # fmt: skip

        # The store's JVM compiles its hot code during the first run: a fresh server's
        # first ingest (as `opsgraph demo` does it) and a running server's differ, so the
        # end-to-end run is measured both ways, each into an empty database.
        show("end to end, fresh store", ingest("cold"))
        alone_rate = show("writer alone", ingest("alone", parsed))
        report = ingest("warm")
        e2e = show("end to end, running store", report)
        print(f"  target >= 5,000 records/s; rejected {report.rejected}, "
              f"write time {report.write_seconds:.1f} s")  # fmt: skip
        by_format: dict[str, list[float]] = {}
        for source in report.sources:
            entry = by_format.setdefault(source.format, [0, 0.0])
            entry[0] += source.records
            entry[1] += source.seconds
        for name, (count, seconds) in sorted(by_format.items()):
            print(f"  {name:<14}{count:>8} records {seconds:7.1f} s "
                  f"{count / seconds if seconds else 0:>9,.0f} records/s")  # fmt: skip
        writes = sum(c["created"] + c["updated"] + c["unchanged"] for c in report.writes.values())
        print(f"  rows written  {writes:>8} ({writes / report.records:.1f} per record)")
        print(f"ratio end-to-end (running store) / writer alone: {e2e / alone_rate:.2f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
