"""Proactive risk: upcoming work that shares what preceded past deviations ranks first,
with the reasons as graph paths."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from test_rca import T0, _plant

from opsgraph.api.graphql import Context, build_schema
from opsgraph.graph.risk import RiskModel
from opsgraph.graph.store import Store

AS_OF = T0 + timedelta(days=8) - timedelta(hours=1)  # runs 0-7 are history, 8-11 upcoming


def test_upcoming_work_on_a_known_bad_lot_ranks_first(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    model = RiskModel(store).fit(AS_OF)
    scored = model.score(AS_OF, horizon_days=7)
    assert {r.order for r in scored[:2]} == {"10009/0010", "10010/0010"}
    top = scored[0].reasons[0]
    assert (top.label, top.key, top.deviating, top.exposed) == ("MaterialLot", "L-BAD", 3, 3)
    assert top.path[-1] == {"label": "MaterialLot", "key": "L-BAD"}
    assert scored[-1].risk < scored[0].risk
    # nothing from after the cut-off was learned: L-BAD's later runs are not in its history
    assert model.counts[("MaterialLot", "L-BAD")] == (3, 3)


def test_orders_at_risk_through_graphql(store: Store) -> None:
    _plant(store, bad_runs=[2, 3, 6, 9, 10])
    query = """query ($asOf: DateTime!) { ordersAtRisk(asOf: $asOf, horizonDays: 7, first: 2) {
        order risk reasons { label key causeType path { label key type } } } }"""
    result = asyncio.run(
        build_schema().execute(
            query, variable_values={"asOf": AS_OF.isoformat()}, context_value=Context(store=store)
        )
    )
    assert result.errors is None, result.errors
    orders = result.data["ordersAtRisk"]
    assert orders[0]["order"] in {"10009/0010", "10010/0010"}
    assert orders[0]["reasons"][0]["key"] == "L-BAD"
