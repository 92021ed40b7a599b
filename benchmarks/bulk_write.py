"""Bulk writer throughput against per-object neomodel writes, measured in the same run.

    python benchmarks/bulk_write.py [--nodes 100000] [--rels 100000] [--sample 1000]

Uses a throw-away embedded ArcadeDB (or OPSGRAPH_URI, whose database it empties first when
OPSGRAPH_TEST_WIPE=yes). Prints rows/s, after a warm-up, for new-node upserts, re-upserts of
unchanged nodes, relationship upserts, and the same work done per row through neomodel's
save()/connect().
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from neomodel import db, get_config

from opsgraph.graph.constraints import apply_schema
from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.graph.writer import BulkWriter
from opsgraph.schema import rel_spec
from opsgraph.schema.model import MaterialLot, Operation


def lots(n: int, prefix: str = "LOT") -> list[dict]:
    return [
        {"lot_id": f"{prefix}-{i:07d}", "batch": f"{i:07d}", "plant": "1010",
         "quantity": 100.0 + i % 50, "unit": "KG", "source_system": "benchmark"}
        for i in range(n)
    ]  # fmt: skip


def rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds else float("inf")


def show(name: str, rows: int, seconds: float, note: str = "") -> float:
    per_second = rate(rows, seconds)
    print(f"{name:<15}{rows:>8} rows {seconds:7.2f} s {per_second:>9,.0f} rows/s {note}")
    return per_second


def timed(fn) -> tuple[object, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rels", type=int, default=100_000)
    parser.add_argument(
        "--sample", type=int, default=1000, help="rows written one by one via neomodel"
    )
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=30_000, help="rows to warm the JVM up")
    args = parser.parse_args()

    server = None
    if os.environ.get("OPSGRAPH_URI"):
        if os.environ.get("OPSGRAPH_TEST_WIPE") != "yes":
            sys.exit("set OPSGRAPH_TEST_WIPE=yes: the benchmark empties the OPSGRAPH_URI database")
        settings = Settings.from_env()
    else:
        settings = Settings(home=Path(tempfile.mkdtemp(prefix="opsgraph-bench-")))
        server = EmbeddedServer(settings)
        server.start()
    store = Store.open(settings)
    try:
        store.write("MATCH (n) DETACH DELETE n")
        apply_schema(store)
        writer = BulkWriter(store, batch_size=args.batch_size)
        print(f"store: {store.description}; batch size {args.batch_size}")

        # The store is a JVM: its JIT compiles the hot paths during the first tens of thousands
        # of rows. Warm it up on throw-away keys and print those figures too, so both the
        # cold-start and the steady-state rates are visible.
        warm = lots(args.warmup, prefix="WARM")
        report, seconds = timed(lambda: writer.upsert_nodes("MaterialLot", warm))
        show("warm-up nodes", args.warmup, seconds, "(cold JVM)")
        writer.upsert_nodes("Operation", ({"operation_id": f"WARM-{i}"} for i in range(1000)))
        warm_rels = [
            {"start": row["lot_id"], "end": f"WARM-{i % 1000}"} for i, row in enumerate(warm)
        ]
        spec = rel_spec("MaterialLot", "CONSUMED_BY", "Operation")
        report, seconds = timed(lambda: writer.upsert_relationships(spec, warm_rels))
        show("warm-up rels", args.warmup, seconds, "(cold JVM)")

        node_rows = lots(args.nodes)
        report, seconds = timed(lambda: writer.upsert_nodes("MaterialLot", node_rows))
        assert report.created == args.nodes, report.as_dict()
        node_rate = show("nodes new", args.nodes, seconds)

        report, seconds = timed(lambda: writer.upsert_nodes("MaterialLot", node_rows))
        assert report.unchanged == args.nodes, report.as_dict()
        show("nodes re-merge", args.nodes, seconds)

        operations = max(1, args.rels // 10)
        writer.upsert_nodes(
            "Operation", ({"operation_id": f"OP-{i:07d}"} for i in range(operations))
        )
        rel_rows = [
            {"start": f"LOT-{i % args.nodes:07d}", "end": f"OP-{i % operations:07d}",
             "quantity": 2.5, "unit": "KG"}
            for i in range(args.rels)
        ]  # fmt: skip
        report, seconds = timed(lambda: writer.upsert_relationships(spec, rel_rows))
        assert report.created == len({(r["start"], r["end"]) for r in rel_rows}), report.as_dict()
        rel_rate = show("rels new", args.rels, seconds)

        # Baseline: the same kinds of rows, one neomodel object at a time.
        get_config().database_name = settings.database_name
        db.set_connection(driver=store.driver)
        sample = lots(args.sample, prefix="NM")
        saved, seconds = timed(lambda: [MaterialLot(**row).save() for row in sample])
        save_rate = show("neomodel save", args.sample, seconds)
        target = Operation.nodes.get(operation_id="OP-0000000")
        _, seconds = timed(
            lambda: [lot.consumed_by.connect(target, {"quantity": 2.5}) for lot in saved]
        )
        connect_rate = show("neomodel conn.", args.sample, seconds)

        print(f"nodes bulk/save    {node_rate / save_rate:6.1f}x (target >= 10x, >= 15,000 rows/s)")
        print(
            f"rels bulk/connect  {rel_rate / connect_rate:6.1f}x (target >= 10x, >= 10,000 rows/s)"
        )
    finally:
        store.close()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
