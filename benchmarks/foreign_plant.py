"""A foreign plant for opsgraph: a four-cell turning / milling / grinding / assembly shop
(14 machines, 5 SAP work centers, 3-shift and 2-shift cells with weekly rotating crews),
written only in real export formats (SAP OData v2 JSON, B2MML ProductionPerformance,
MTConnect Streams XML, SafetyCulture feed pages, MES and worker CSV), with a ground truth of
what caused each deviation the opsgraph rules will find.

Cause mechanisms (each seed picks 3-5 with its own targets and strengths; all probabilistic):

- ``bad_batch``: one supplier batch (bar stock or an assembly component) is out of spec;
  orders using it scrap more at the step that consumed it or, for bar stock in some seeds,
  only later at grinding (hardness shows there), never at the other steps.
- ``supplier``: every batch from one minor supplier is slightly worse at the consuming step.
- ``machine_drift``: one machine degrades for 6-14 days (hit rate ramps up), then recovers;
  per seed with or without MTConnect vibration warnings, long stops, failed TPM checklist
  items, out-of-tolerance CMM results and a corrective maintenance record.
- ``operator_step``: one operator struggles at one operation type only (the rest is fine).
- ``fixture_setup``: a fixture built badly at one changeover on a milling center; that
  product scraps more on that machine for its next 6-10 operations, later setups of the same
  product there remounting the same fixture (listed as ``later_setups``).
- ``upstream_runout``: a lathe turns eccentric parts for a period; the scrap appears only
  at the grinding step of those orders, on another machine.

Noise: base binomial scrap, rare random scrap events, random alarms and short interruptions
on every machine, rare breakdowns, random failed checklist items and CMM outliers, one
dominant supplier, and some operators who get far more of the work than others.

``python benchmarks/foreign_plant.py OUT_DIR --seed N [--weeks W]`` writes ``OUT_DIR/erp``,
``OUT_DIR/mes``, ``OUT_DIR/worker`` and ``OUT_DIR/ground_truth.json``.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

PLANT = "2300"
START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
MECHANISMS = ("bad_batch", "supplier", "machine_drift", "operator_step", "fixture_setup",
              "upstream_runout")  # fmt: skip
# line -> (shifts per working day, operators per crew, {work center: machines})
CELLS = {
    "ZD-DREH": (3, 3, {"DREH": ["30011001", "30011002", "30011003", "30011004"]}),
    "ZF-FRAES": (3, 3, {"FRAES": ["30012001", "30012002", "30012003", "30012004"]}),
    "ZS-SCHL": (2, 2, {"SCHL": ["30013001", "30013002", "30013003"]}),
    "ZM-FIN": (2, 3, {"WASCH": ["30014001"], "MONT": ["30014101", "30014102"]}),
}
WC_LINE = {wc: line for line, (_, _, wcs) in CELLS.items() for wc in wcs}
WC_MACHINES = {wc: ms for _, (_, _, wcs) in CELLS.items() for wc, ms in wcs.items()}
MACHINE_WC = {m: wc for wc, ms in WC_MACHINES.items() for m in ms}
WC_NAME = {"DREH": "CNC-Drehmaschine", "FRAES": "BAZ vertikal", "SCHL": "Rundschleifmaschine",
           "WASCH": "Reinigungsanlage", "MONT": "Montageplatz"}  # fmt: skip
Routing = list[tuple[str, str, float]]  # (work center, operation text, minutes per piece)
# product -> (description, bar stock, kg per piece, routing, component consumed at MONT)
PRODUCTS: dict[str, tuple[str, str, float, Routing, tuple[str, int] | None]] = {
    "4711-210-01": ("Antriebswelle D35", "RM-42CRMO4-D60", 1.9,
                    [("DREH", "Drehen komplett", 2.2), ("FRAES", "Passfedernut fraesen", 1.8),
                     ("SCHL", "Lagersitz schleifen", 1.5), ("WASCH", "Reinigen", 0.3)], None),
    "4711-330-02": ("Flansch DN80", "RM-S355-D160", 3.2,
                    [("DREH", "Drehen Seite 1+2", 1.6), ("FRAES", "Bohrbild fraesen", 1.6),
                     ("WASCH", "Reinigen", 0.3)], None),
    "4711-450-03": ("Getriebegehaeuse GH3", "RM-ALMG4-PL40", 2.6,
                    [("FRAES", "Schruppen", 3.2), ("FRAES", "Schlichten", 2.8),
                     ("WASCH", "Reinigen", 0.4), ("MONT", "Lagerbuchsen einpressen", 1.0)],
                    ("CP-BUSH-32", 2)),
    "4711-520-04": ("Ventilkoerper VK150", "RM-14404-D80", 2.2,
                    [("DREH", "Drehen komplett", 2.6), ("FRAES", "Anschluesse fraesen", 2.3),
                     ("SCHL", "Dichtsitz schleifen", 1.3), ("MONT", "Dichtsatz montieren", 0.8)],
                    ("CP-SEAL-150", 1)),
    "4711-610-05": ("Zahnradrohling Z42", "RM-16MNCR5-D110", 2.8,
                    [("DREH", "Drehen Rohling", 1.4), ("SCHL", "Bohrung schleifen", 1.0)], None),
    "4711-720-06": ("Lagerbolzen D20", "RM-C45-D40", 0.4,
                    [("DREH", "Drehen", 1.0), ("SCHL", "Aussen rund schleifen", 0.8),
                     ("WASCH", "Reinigen", 0.3)], None),
}  # fmt: skip
GROUND_LATER = ("RM-42CRMO4-D60", "RM-14404-D80", "RM-16MNCR5-D110", "RM-C45-D40")
CMM = ("D_SITZ", 35.010, 35.002, 35.018, "mm")  # measured after grinding: nominal, limits
DOMINANT = "0000104711"
SUPPLIERS = {  # material -> suppliers; the dominant one delivers most bar stock
    "RM-42CRMO4-D60": [DOMINANT, "0000104802", "0000105120"],
    "RM-S355-D160": [DOMINANT, "0000104802"],
    "RM-ALMG4-PL40": [DOMINANT, "0000106033"],
    "RM-14404-D80": [DOMINANT, "0000105120", "0000106033"],
    "RM-16MNCR5-D110": [DOMINANT, "0000105120"],
    "RM-C45-D40": [DOMINANT, "0000104802"],
    "CP-BUSH-32": ["0000107200", "0000106033"],
    "CP-SEAL-150": ["0000107200", "0000105120"],
}
FIRST = (
    "Anna Jonas Lea Tim Marta Deniz Olga Piotr Sven Ines Kemal Nina Felix Vera Milan Rosa "
    "Ugur Katrin Bernd Ayse"
).split()
LAST = "Brandt Yilmaz Novak Huber Schulz Kovac Lang Roth Berger Wagner Sommer Popescu".split()
ALARMS = [("Warning", "SYSTEM", "2051", "Kuehlmittelstand niedrig"),
          ("Warning", "LOGIC_PROGRAM", "EX0412", "Werkzeugstandzeit erreicht"),
          ("Warning", "SYSTEM", "1107", "Schutztuer offen waehrend Zyklus"),
          ("Fault", "MOTION_PROGRAM", "EX1033", "Achse Z Schleppfehler"),
          ("Warning", "SYSTEM", "2210", "Zentralschmierung Fuellstand")]  # fmt: skip
TPM_ITEMS = [("tpm-01", "Kuehlmittel Konzentration im Sollbereich?"),
             ("tpm-02", "Spindel/Schleifspindel laeuft ohne Geraeusche und Vibration?"),
             ("tpm-03", "Spannmittel und Vorrichtung sauber und unbeschaedigt?"),
             ("tpm-04", "Schutzeinrichtungen und Tuerverriegelung funktionieren?"),
             ("tpm-05", "Spaenefoerderer frei?")]  # fmt: skip
Piece = tuple[datetime, datetime, "Shift"]
CONF_TYPE = "API_PROD_ORDER_CONFIRMATION_2_SRV.ProdnOrdConf2Type"
REASONS = ["0001", "0002", "0004", ""]  # plant-defined variance reasons, often left empty


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sap_date(t: datetime) -> str:
    return f"/Date({int(datetime(t.year, t.month, t.day, tzinfo=UTC).timestamp() * 1000)})/"


def sap_time(t: datetime) -> str:
    return f"PT{t.hour:02d}H{t.minute:02d}M{t.second:02d}S"


def sap_moment(prefix: str, t: datetime, date: str = "Date", time: str = "Time") -> dict[str, str]:
    return {f"{prefix}{date}": sap_date(t), f"{prefix}{time}": sap_time(t)}


def odata(results: list[dict[str, Any]], next_link: str | None = None) -> dict[str, Any]:
    return {"d": {"results": results, **({"__next": next_link} if next_link else {})}}


def unit_of(material: str) -> str:
    return "ST" if material.startswith(("CP-", "4711-")) else "KG"


@dataclass
class Shift:
    shift_id: str
    line: str
    crew: str
    start: datetime
    end: datetime


@dataclass
class Lot:
    material: str
    batch: str
    supplier: str
    size: float
    left: float
    received: datetime

    @property
    def key(self) -> str:
        return f"{self.material}/{self.batch}"


@dataclass
class Op:
    order: str
    number: str
    wc: str
    text: str
    machine: str = ""
    qty_in: int = 0
    start: datetime = START
    end: datetime = START
    segs: list[tuple[datetime, datetime, str, int, int]] = field(default_factory=list)
    lots: list[tuple[Lot, float]] = field(default_factory=list)
    fired: dict[str, float] = field(default_factory=dict)  # cause -> extra scrap rate

    @property
    def key(self) -> str:
        return f"{self.order}/{self.number}"

    @property
    def scrap(self) -> int:
        return sum(s[4] for s in self.segs)


@dataclass
class Order:
    order_id: str
    product: str
    qty: int
    release: datetime
    ops: list[Op] = field(default_factory=list)


class Plant:
    """One seed's plant: calendar, crews and causes, then the schedule, then the exports."""

    def __init__(self, seed: int, weeks: int) -> None:
        self.rng = rng = random.Random(seed)
        self.weeks = weeks
        self.horizon = START + timedelta(weeks=weeks, days=-2)
        self.shifts: dict[str, list[Shift]] = {}
        self.crews: dict[tuple[str, str], list[str]] = {}
        self.names: dict[str, str] = {}
        self.weight: dict[str, float] = {}
        for line, (n_shifts, per_crew, _) in CELLS.items():
            for crew in "ABC"[:n_shifts]:
                members = []
                while len(members) < per_crew:
                    pid = f"0007{rng.randint(1000, 9999)}"
                    if pid not in self.names:
                        members.append(pid)
                        self.names[pid] = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                        self.weight[pid] = 1.0
                self.weight[rng.choice(members)] = rng.uniform(2.0, 3.5)  # busy operators
                self.crews[(line, crew)] = members
            self.shifts[line] = self._calendar(line, n_shifts)
        self.ends = {line: [s.end for s in shifts] for line, shifts in self.shifts.items()}
        self.base_scrap = rng.uniform(0.002, 0.005)
        self.noise_p = rng.uniform(0.001, 0.003)
        self.lots: dict[str, list[Lot]] = {m: [] for m in SUPPLIERS}
        self.batch_no = rng.randint(1000, 4000)
        self.orders: list[Order] = []
        self.mtc: list[tuple[datetime, str, str, tuple[Any, ...]]] = []  # time, machine, kind
        self.changeovers: list[dict[str, str]] = []
        self.checks: list[dict[str, str]] = []
        self.inspections: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.maintenance: list[dict[str, str]] = []
        self.blame: dict[str, str] = {}  # deviation id -> cause ("" = none)
        self.causes = self._pick_causes()

    # -- calendar -----------------------------------------------------------------------------

    def _calendar(self, line: str, n_shifts: int) -> list[Shift]:
        out = []
        for day in range((self.weeks + 4) * 7):
            date = START + timedelta(days=day)
            if date.weekday() > 4:
                continue
            hours = (6, 14, 22)[: n_shifts if date.weekday() < 4 else 2]  # no Friday night
            for index, hour in enumerate(hours):
                crew = "ABC"[(index + day // 7) % n_shifts]
                start = date + timedelta(hours=hour)
                shift_id = f"{line}-{date:%Y%m%d}-{'FSN'[index]}"
                out.append(Shift(shift_id, line, crew, start, start + timedelta(hours=8)))
        return out

    def _work(self, line: str, t: datetime, seconds: float) -> list[Piece]:
        """``seconds`` of work from ``t`` in the line's shifts, as (start, end, shift) pieces."""
        t = t.replace(microsecond=0)
        shifts, index = self.shifts[line], bisect.bisect_right(self.ends[line], t)
        pieces: list[Piece] = []
        left = max(60.0, seconds)
        while left > 0:
            shift = shifts[index]
            begin = max(t, shift.start)
            take = min(left, (shift.end - begin).total_seconds())
            t = begin + timedelta(seconds=round(take))
            pieces.append((begin, t, shift))
            left, index = left - take, index + 1
        return pieces

    # -- causes -------------------------------------------------------------------------------

    def _pick_causes(self) -> dict[str, dict[str, Any]]:
        rng, days = self.rng, (self.horizon - START).days

        def when(low: float, high: float) -> datetime:
            return START + timedelta(days=rng.uniform(low, high) * days)

        chosen = rng.sample(MECHANISMS, rng.randint(3, 5))
        causes: dict[str, dict[str, Any]] = {}
        supplier = rng.choice(sorted({s for v in SUPPLIERS.values() for s in v} - {DOMINANT}))
        if "supplier" in chosen:
            causes["supplier"] = {
                "label": "Supplier",
                "key": supplier,
                "hit": rng.uniform(0.15, 0.35),
                "extra": (0.04, 0.10),
            }
        if "bad_batch" in chosen:
            material = rng.choice(sorted(SUPPLIERS))
            later = material in GROUND_LATER and rng.random() < 0.5
            causes["bad_batch"] = {
                "label": "MaterialLot",
                "key": None,
                "material": material,
                "from": when(0.15, 0.6),
                "avoid": supplier,
                "step": "SCHL" if later else "consumer",
                "hit": rng.uniform(0.5, 0.85),
                "extra": (0.06, 0.20),
            }
        if "machine_drift" in chosen:
            machine = rng.choice(
                [m for m, wc in MACHINE_WC.items() if wc in ("DREH", "FRAES", "SCHL")]
            )
            begin = when(0.2, 0.55)
            causes["machine_drift"] = {
                "label": "Machine",
                "key": machine,
                "from": begin,
                "to": begin + timedelta(days=rng.uniform(6, 14)),
                "hit": (rng.uniform(0.2, 0.4), rng.uniform(0.7, 0.95)),
                "extra": (0.05, 0.15),
                "alarms": rng.random() < 0.6,
                "stops": rng.random() < 0.4,
                "checklist": rng.random() < 0.5,
                "qc": rng.random() < 0.7,
                "maintenance": rng.random() < 0.5,
            }
        if "upstream_runout" in chosen:
            lathes = [
                m for m in WC_MACHINES["DREH"] if m != causes.get("machine_drift", {}).get("key")
            ]
            begin = when(0.15, 0.6)
            causes["upstream_runout"] = {
                "label": "Machine",
                "key": rng.choice(lathes),
                "from": begin,
                "to": begin + timedelta(days=rng.uniform(7, 14)),
                "hit": rng.uniform(0.4, 0.75),
                "extra": (0.06, 0.15),
            }
        if "operator_step" in chosen:
            wc, text = rng.choice(
                [
                    ("SCHL", "Dichtsitz schleifen"),
                    ("SCHL", "Lagersitz schleifen"),
                    ("MONT", "Lagerbuchsen einpressen"),
                    ("FRAES", "Schlichten"),
                    ("DREH", "Drehen komplett"),
                ]
            )
            people = [p for (line, _), ms in self.crews.items() if line == WC_LINE[wc] for p in ms]
            person = rng.choice(people)
            self.weight[person] = max(self.weight[person], 2.0)  # keeps being put on that step
            causes["operator_step"] = {
                "label": "Person",
                "key": person,
                "wc": wc,
                "text": text,
                "hit": rng.uniform(0.45, 0.75),
                "extra": (0.06, 0.16),
            }
        if "fixture_setup" in chosen:
            causes["fixture_setup"] = {
                "label": "Changeover",
                "key": None,
                "product": None,
                "uses": rng.randint(6, 10),
                "later_setups": [],
                "machine": rng.choice(WC_MACHINES["FRAES"]),
                "from": when(0.2, 0.6),
                "hit": rng.uniform(0.55, 0.9),
                "extra": (0.06, 0.18),
            }
        return causes

    def _fire(self, op: Op, name: str, hit: float) -> None:
        if self.rng.random() < hit:
            op.fired[name] = self.rng.uniform(*self.causes[name]["extra"])

    def _drift(self, machine: str, t: datetime) -> float | None:
        """How far into its drift window the machine is (0..1); None outside it."""
        drift = self.causes.get("machine_drift")
        if not drift or drift["key"] != machine or not drift["from"] <= t < drift["to"]:
            return None
        return (t - drift["from"]) / (drift["to"] - drift["from"])

    # -- material -----------------------------------------------------------------------------

    def _draw(self, material: str, need: float, at: datetime) -> list[tuple[Lot, float]]:
        """Issue ``need`` of a material first in, first out, receiving new batches as needed."""
        rng, taken, lots, full = self.rng, [], self.lots[material], need
        while need > 1e-6:
            if not lots or lots[-1].left <= 1e-6:
                suppliers = SUPPLIERS[material]
                weights = (
                    [0.68 if s == DOMINANT else 0.32 / (len(suppliers) - 1) for s in suppliers]
                    if DOMINANT in suppliers
                    else [0.7, 0.3]
                )
                self.batch_no += rng.randint(1, 9)
                size = round(full * rng.uniform(4, 10) / 10) * 10 + 10
                received = at - timedelta(days=rng.uniform(2, 12), hours=rng.uniform(0, 8))
                lots.append(
                    Lot(
                        material,
                        f"25{self.batch_no:08d}",
                        rng.choices(suppliers, weights)[0],
                        size,
                        size,
                        received,
                    )
                )
                bad = self.causes.get("bad_batch")
                if (
                    bad
                    and bad["key"] is None
                    and material == bad["material"]
                    and at >= bad["from"]
                    and lots[-1].supplier != bad["avoid"]
                ):
                    bad["key"] = lots[-1].key
                    lots[-1].size = lots[-1].left = size * 2  # a big delivery
            lot = lots[-1]
            use = min(need, lot.left)
            lot.left, need = lot.left - use, need - use
            taken.append((lot, round(use, 3)))
        return taken

    # -- production ---------------------------------------------------------------------------

    def build(self) -> None:
        rng = self.rng
        free = dict.fromkeys(MACHINE_WC, START)
        last: dict[str, str | None] = dict.fromkeys(MACHINE_WC)
        speed = {m: rng.uniform(0.92, 1.08) for m in MACHINE_WC}
        number = rng.randint(60010000, 60019000)
        for day in range((self.horizon - START).days):
            date = START + timedelta(days=day)
            left = max(0, round(rng.gauss(14, 2))) if date.weekday() < 5 else 0
            while left > 0:  # planners release campaigns of one product
                product = rng.choices(sorted(PRODUCTS), [3, 2, 2, 2, 2, 3])[0]
                release = date + timedelta(hours=rng.uniform(0, 14))
                for _ in range(min(left, rng.randint(2, 6))):
                    number, left = number + rng.randint(1, 3), left - 1
                    order = Order(
                        str(number),
                        product,
                        rng.randrange(60, 260, 10),
                        release + timedelta(hours=rng.uniform(0, 2)),
                    )
                    order.ops = [
                        Op(order.order_id, f"{10 * (i + 1):04d}", wc, text)
                        for i, (wc, text, _) in enumerate(PRODUCTS[product][3])
                    ]
                    self.orders.append(order)
        self.orders.sort(key=lambda o: o.release)
        for order in self.orders:
            earliest, pieces = order.release, order.qty
            for op, (wc, _, cycle) in zip(order.ops, PRODUCTS[order.product][3], strict=True):
                line = WC_LINE[wc]

                def cost(
                    m: str, earliest: datetime = earliest, product: str = order.product
                ) -> datetime:
                    ready = max(free[m], earliest)  # a machine set up for it is worth a wait
                    return ready - timedelta(hours=6) if last[m] == product else ready

                machine = min(WC_MACHINES[wc], key=cost)
                t = self._work(line, max(free[machine], earliest), 60)[0][0]
                t = self._breakdown(machine, line, t)
                if last[machine] != order.product:
                    t = self._changeover(machine, line, t, last[machine], order.product)
                else:
                    t = self._work(line, t, rng.uniform(3, 8) * 60)[-1][1]
                last[machine] = order.product
                op.machine, op.qty_in = machine, pieces
                work = self._work(line, t, pieces * cycle * speed[machine] * rng.uniform(57, 66))
                op.start, op.end = work[0][0], work[-1][1]
                free[machine] = op.end
                _, bar, kg, _, component = PRODUCTS[order.product]
                if op is order.ops[0]:
                    op.lots = self._draw(bar, round(op.qty_in * kg, 3), op.start)
                elif component and wc == "MONT":
                    op.lots = self._draw(component[0], op.qty_in * component[1], op.start)
                self._scrap(order, op, work)
                pieces -= op.scrap
                earliest = op.end + timedelta(hours=rng.uniform(0.3, 4))
                self._machine_events(op, work)
                if wc == "SCHL":
                    self._cmm(op)

    def _breakdown(self, machine: str, line: str, t: datetime) -> datetime:
        drift, draw = self._drift(machine, t), self.rng.random()
        stops = drift is not None and self.causes["machine_drift"]["stops"]
        if draw >= 0.0015 and not (stops and draw < 0.05):
            return t
        end = t + timedelta(minutes=self.rng.uniform(18, 110))
        self.mtc += [(t, machine, "exec", ("STOPPED",)), (end, machine, "exec", ("READY",))]
        self.blame[f"DEV-DOWN-{machine}/{t.isoformat()}"] = "" if draw < 0.0015 else "machine_drift"
        return self._work(line, end, 60)[0][0]

    def _changeover(
        self, machine: str, line: str, t: datetime, old: str | None, new: str
    ) -> datetime:
        end = self._work(line, t, self.rng.uniform(25, 70) * 60)[-1][1]
        changeover_id = f"RU-{machine}-{len(self.changeovers) + 1:05d}"
        self.changeovers.append(
            {
                "changeover_id": changeover_id,
                "machine_id": machine,
                "from_product": old or "",
                "to_product": new,
                "start": iso(t),
                "end": iso(end),
            }
        )
        fixture = self.causes.get("fixture_setup")
        if fixture and fixture["machine"] == machine and end >= fixture["from"]:
            if fixture["key"] is None:
                fixture["key"], fixture["product"] = changeover_id, new
            elif new == fixture["product"] and fixture["uses"] > 0:
                fixture["later_setups"].append(changeover_id)  # the same fixture remounted
        return end

    def _scrap(self, order: Order, op: Op, work: list[Piece]) -> None:
        rng, causes = self.rng, self.causes
        bad = causes.get("bad_batch")
        if bad and bad["key"]:
            exposed = (
                op.lots
                if bad["step"] == "consumer"
                else (order.ops[0].lots if op.wc == "SCHL" else [])
            )
            if any(lot.key == bad["key"] for lot, _ in exposed):
                self._fire(op, "bad_batch", bad["hit"])
        supplier = causes.get("supplier")
        if supplier and any(lot.supplier == supplier["key"] for lot, _ in op.lots):
            self._fire(op, "supplier", supplier["hit"])
        level = self._drift(op.machine, op.start)
        if level is not None:
            low, high = causes["machine_drift"]["hit"]
            self._fire(op, "machine_drift", low + (high - low) * level)
        runout, first = causes.get("upstream_runout"), order.ops[0]
        if (
            runout
            and op.wc == "SCHL"
            and first.machine == runout["key"]
            and runout["from"] <= first.start < runout["to"]
        ):
            self._fire(op, "upstream_runout", runout["hit"])
        fixture = causes.get("fixture_setup")
        if (
            fixture
            and fixture["key"]
            and op.machine == fixture["machine"]
            and order.product == fixture["product"]
            and fixture["uses"] > 0
        ):
            fixture["uses"] -= 1
            self._fire(op, "fixture_setup", fixture["hit"])
        person = causes.get("operator_step")
        person_extra = 0.0
        if person and (op.wc, op.text) == (person["wc"], person["text"]):
            if rng.random() < person["hit"]:
                person_extra = rng.uniform(*person["extra"])
        noise = rng.uniform(0.05, 0.12) if rng.random() < self.noise_p else 0.0
        shared = sum(op.fired.values()) + noise + self.base_scrap
        total, left = sum((e - s).total_seconds() for s, e, _ in work), op.qty_in
        for index, (s, e, shift) in enumerate(work):
            share = round(op.qty_in * (e - s).total_seconds() / total)
            n = left if index == len(work) - 1 else min(share, left)
            left -= n
            members = self.crews[(shift.line, shift.crew)]
            who = rng.choices(members, [self.weight[p] for p in members])[0]
            rate = shared
            if person_extra and who == person["key"]:
                rate += person_extra
                op.fired["operator_step"] = person_extra
            scrap = sum(rng.random() < min(rate, 0.5) for _ in range(n))
            op.segs.append((s, e, who, n - scrap, scrap))
        if op.scrap and op.scrap / op.qty_in >= 0.05:
            self.blame[f"DEV-SCRAP-{op.key}"] = self._cause_of(op)

    @staticmethod
    def _cause_of(op: Op) -> str:
        return max(op.fired, key=lambda k: op.fired[k]) if op.fired else ""

    def _cmm(self, op: Op) -> None:
        name, nominal, low, high, unit = CMM
        drift = self.causes.get("machine_drift")
        offset = 0.0
        if "machine_drift" in op.fired and drift and drift["qc"]:
            offset = self.rng.uniform(0.7, 1.3) * (high - nominal)
        for index in range(1 if op.qty_in < 150 else 2):
            value = round(self.rng.gauss(nominal + offset, (high - low) / 6.6), 3)
            check_id = f"CMM-{op.order}-{op.number}-{index + 1}"
            failed = value < low or value > high
            at = op.end - timedelta(minutes=self.rng.uniform(5, 40) if index == 0 else 0)
            self.checks.append(
                {
                    "check_id": check_id,
                    "operation_id": op.key,
                    "characteristic": name,
                    "value": f"{value:.3f}",
                    "unit": unit,
                    "lower_limit": f"{low:.3f}",
                    "upper_limit": f"{high:.3f}",
                    "result": "fail" if failed else "pass",
                    "checked_at": iso(at),
                }
            )
            if failed:
                self.blame[f"DEV-QC-{check_id}"] = self._cause_of(op)

    def _machine_events(self, op: Op, work: list[Piece]) -> None:
        rng, m = self.rng, op.machine
        drift = self.causes.get("machine_drift")
        for index, (s, e, _) in enumerate(work):
            if index == 0 or work[index - 1][1] != s:
                self.mtc.append((s, m, "exec", ("ACTIVE",)))
            length = (e - s).total_seconds()
            if length > 3600 and rng.random() < 0.25:  # short interruptions, under 15 min
                at = s + timedelta(seconds=rng.uniform(600, length - 1500))
                back = at + timedelta(minutes=rng.uniform(2, 12))
                self.mtc += [(at, m, "exec", ("INTERRUPTED",)), (back, m, "exec", ("ACTIVE",))]
            level = self._drift(m, s)
            load = rng.gauss(38, 4) + (18 * level if level is not None else 0)
            self.mtc.append((s + (e - s) / 2, m, "sample", ("Sload", round(load, 1))))
            if level is not None and drift and drift["alarms"] and rng.random() < 0.3 + level / 2:
                at = s + timedelta(seconds=rng.uniform(60, max(120, length - 60)))
                code = "WH-IMB" if MACHINE_WC[m] == "SCHL" else "SP-VIB-01"
                clear = at + timedelta(minutes=rng.uniform(1, 10))
                self.mtc += [
                    (
                        at,
                        m,
                        "cond",
                        ("vib_cond", "Warning", "LOAD", code, "Schwingung Spindel ueber Grenzwert"),
                    ),
                    (clear, m, "cond", ("vib_cond", "Normal", "LOAD", "", "")),
                ]
            if index == len(work) - 1 or work[index + 1][0] != e:
                self.mtc.append((e, m, "exec", ("READY",)))

    def background(self) -> None:
        """Random alarms on every machine, controllers off at weekends, weekly TPM checks."""
        rng = self.rng
        users = {p: f"user_{rng.getrandbits(128):032x}" for p in self.names}
        last_end = max(o.ops[-1].end for o in self.orders)
        for day in range((last_end - START).days + 2):
            date = START + timedelta(days=day)
            for m in MACHINE_WC:
                if date.weekday() == 5:
                    self.mtc.append((date + timedelta(hours=1), m, "exec", ("UNAVAILABLE",)))
                if date.weekday() > 4:
                    continue
                if date.weekday() == 0 and day:
                    self.mtc.append((date + timedelta(hours=5, minutes=40), m, "exec", ("READY",)))
                for _ in range(rng.choices([0, 1, 2, 3], [0.35, 0.4, 0.18, 0.07])[0]):
                    level, kind, code, text = rng.choice(ALARMS)
                    at = date + timedelta(hours=rng.uniform(6, 21.5))
                    item, clear = f"cond_{kind.lower()}", at + timedelta(minutes=rng.uniform(1, 25))
                    self.mtc += [
                        (at, m, "cond", (item, level, kind, code, text)),
                        (clear, m, "cond", (item, "Normal", kind, "", "")),
                    ]
                if date.weekday() == 0:
                    self._tpm(m, date, users)
        self.mtc.sort(key=lambda e: e[0])
        drift = self.causes.get("machine_drift")
        if drift and drift["maintenance"]:
            end = drift["to"]
            self.maintenance.append(
                {
                    "maintenance_id": f"40{rng.randint(100000, 999999)}",
                    "machine_id": drift["key"],
                    "maintenance_type": "corrective",
                    "status": "completed",
                    "description": "Spindellager getauscht, Spindel gewuchtet",
                    "scheduled_at": iso(end),
                    "start": iso(end),
                    "end": iso(end + timedelta(hours=3)),
                }
            )

    def _tpm(self, machine: str, day: datetime, users: dict[str, str]) -> None:
        rng, line = self.rng, WC_LINE[MACHINE_WC[machine]]
        shift = next(s for s in self.shifts[line] if s.start == day + timedelta(hours=6))
        person = rng.choice(self.crews[(line, shift.crew)])
        audit = f"audit_{rng.getrandbits(128):032x}"
        started = day + timedelta(hours=6, minutes=rng.uniform(5, 40))
        level, drift = self._drift(machine, started), self.causes.get("machine_drift")
        failures = 0
        for item_id, label in TPM_ITEMS:
            failed, cause = rng.random() < 0.005, ""
            if item_id == "tpm-02" and level is not None and drift and drift["checklist"]:
                if rng.random() < 0.5 + 0.4 * level:
                    failed, cause = True, "machine_drift"
            failures += failed
            self.items.append(
                {
                    "id": f"{audit}_{item_id}",
                    "item_id": item_id,
                    "audit_id": audit,
                    "label": label,
                    "type": "question",
                    "response": "Nein" if failed else "Ja",
                    "is_failed_response": failed,
                    "item_index": len(self.items),
                }
            )
            if failed:
                self.blame[f"DEV-INSP-{audit}/{item_id}"] = cause
        self.inspections.append({
            "id": audit, "template_id": "template_7c1e0f5a9b2d4e6f8a3c5b7d9e1f2a4c",
            "template_name": "TPM Wochencheck Werkzeugmaschine",
            "name": f"TPM {machine} KW{started.isocalendar()[1]:02d}",
            "score_percentage": round(100 * (len(TPM_ITEMS) - failures) / len(TPM_ITEMS), 1),
            "date_started": iso(started), "date_completed": iso(started + timedelta(minutes=12)),
            "author_id": users[person], "author_name": self.names[person], "asset_id": machine,
            "site_id": "location_werk2300"})  # fmt: skip

    # -- exports ------------------------------------------------------------------------------

    def write(self, out: Path) -> dict[str, Any]:
        for sub in ("erp", "mes", "worker"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        self._write_sap(out / "erp")
        self._write_b2mml(out / "mes")
        self._write_mtconnect(out / "mes")
        write_csv(out / "mes" / "cmm_results.csv", self.checks)
        write_csv(out / "mes" / "setup_log.csv", self.changeovers)
        if self.maintenance:
            write_csv(out / "erp" / "pm_orders.csv", self.maintenance)
        write_csv(
            out / "erp" / "equipment.csv",
            [
                {
                    "machine_id": m,
                    "line_id": WC_LINE[wc],
                    "work_center_id": wc,
                    "name": f"{WC_NAME[wc]} {m[-2:]}",
                }
                for m, wc in MACHINE_WC.items()
            ],
        )
        last_end = max(o.ops[-1].end for o in self.orders)
        write_csv(
            out / "worker" / "schichtplan.csv",
            [
                {
                    "shift_id": s.shift_id,
                    "line_id": line,
                    "crew": s.crew,
                    "start": iso(s.start),
                    "end": iso(s.end),
                    "person_id": p,
                    "name": self.names[p],
                    "role": "Maschinenbediener",
                }
                for line, shifts in self.shifts.items()
                for s in shifts
                if s.start <= last_end
                for p in self.crews[(line, s.crew)]
            ],
        )
        for name, rows in (("inspections", self.inspections), ("inspection_items", self.items)):
            page = {"metadata": {"next_page": None, "remaining_records": 0}, "data": rows}
            (out / "worker" / f"feed_{name}.json").write_text(json.dumps(page, indent=1))
        truth = self.ground_truth()
        (out / "ground_truth.json").write_text(json.dumps(truth, indent=2))
        return truth

    def _write_sap(self, folder: Path) -> None:
        rng, srv = self.rng, "API_PRODUCTION_ORDER_2_SRV"
        products = [
            {
                "__metadata": {"type": "API_PRODUCT_SRV.A_ProductType"},
                "Product": p,
                "ProductType": "FERT",
                "BaseUnit": "ST",
                "to_Description": {
                    "results": [{"Product": p, "Language": "DE", "ProductDescription": d[0]}]
                },
            }
            for p, d in PRODUCTS.items()
        ]
        orders, confs, docs, batches = [], [], [], []
        group, doc_no = 400000 + rng.randint(0, 90000), 4900100000
        for order in self.orders:
            first, last = order.ops[0], order.ops[-1]
            ops = [
                {
                    "__metadata": {"type": f"{srv}.A_ProductionOrderOperation_2Type"},
                    "ManufacturingOrder": order.order_id,
                    "ManufacturingOrderSequence": "0",
                    "ManufacturingOrderOperation": op.number,
                    "MfgOrderOperationText": op.text,
                    "ProductionPlant": PLANT,
                    "WorkCenter": op.wc,
                    "OperationUnit": "ST",
                    "OpPlannedTotalQuantity": f"{order.qty}.000",
                    "OpTotalConfirmedYieldQty": f"{op.qty_in - op.scrap}.000",
                    "OpTotalConfirmedScrapQty": f"{op.scrap}.000",
                    **sap_moment("OpActualExecutionStart", op.start),
                    **sap_moment("OpActualExecutionEnd", op.end),
                }
                for op in order.ops
            ]
            for op in order.ops:
                group += 1
                for count, (s, e, who, good, scrap) in enumerate(op.segs, 1):
                    confs.append(
                        {
                            "__metadata": {"type": CONF_TYPE},
                            "ConfirmationGroup": f"{group:010d}",
                            "ConfirmationCount": f"{count:08d}",
                            "OrderID": order.order_id,
                            "OrderOperation": op.number,
                            "Sequence": "0",
                            "OrderType": "PP01",
                            "Material": order.product,
                            "Plant": PLANT,
                            "WorkCenter": op.wc,
                            "Personnel": who,
                            "ConfirmationUnit": "ST",
                            "ConfirmationYieldQuantity": f"{good}.000",
                            "ConfirmationScrapQuantity": f"{scrap}.000",
                            "ConfirmationReworkQuantity": "0.000",
                            "VarianceReasonCode": rng.choice(REASONS) if scrap else "",
                            "IsFinalConfirmation": count == len(op.segs),
                            "IsReversed": False,
                            "IsReversal": False,
                            "PostingDate": sap_date(e),
                            **sap_moment("ConfirmedExecutionStart", s),
                            **sap_moment("ConfirmedExecutionEnd", e),
                        }
                    )
                if op.lots:
                    doc_no += 1
                    docs.append(
                        matdoc(
                            doc_no,
                            op.start,
                            [
                                {
                                    "Material": lot.material,
                                    "Batch": lot.batch,
                                    "GoodsMovementType": "261",
                                    "ManufacturingOrder": order.order_id,
                                    "QuantityInEntryUnit": f"{q:.3f}",
                                    "EntryUnit": unit_of(lot.material),
                                }
                                for lot, q in op.lots
                            ],
                        )
                    )
            final, doc_no = last.qty_in - last.scrap, doc_no + 1
            docs.append(
                matdoc(
                    doc_no,
                    last.end,
                    [
                        {
                            "Material": order.product,
                            "Batch": f"F{order.order_id}",
                            "GoodsMovementType": "101",
                            "ManufacturingOrder": order.order_id,
                            "QuantityInEntryUnit": f"{final}.000",
                            "EntryUnit": "ST",
                        }
                    ],
                )
            )
            planned_start = first.start - timedelta(minutes=rng.uniform(-60, 240))
            planned_end = last.end + timedelta(minutes=rng.uniform(-30, 480))  # never 1 h late
            orders.append(
                {
                    "__metadata": {"type": f"{srv}.A_ProductionOrder_2Type"},
                    "ManufacturingOrder": order.order_id,
                    "ManufacturingOrderCategory": "10",
                    "ManufacturingOrderType": "PP01",
                    "OrderIsCreated": True,
                    "OrderIsReleased": True,
                    "OrderIsPartiallyConfirmed": False,
                    "OrderIsConfirmed": True,
                    "OrderIsTechnicallyCompleted": False,
                    "OrderIsClosed": False,
                    "Material": order.product,
                    "ProductionPlant": PLANT,
                    "MfgOrderCreationDate": sap_date(order.release - timedelta(days=3)),
                    **sap_moment("MfgOrderPlannedStart", planned_start),
                    **sap_moment("MfgOrderPlannedEnd", planned_end),
                    "ProductionUnit": "ST",
                    "TotalQuantity": f"{order.qty}.000",
                    "MfgOrderConfirmedYieldQty": f"{final}.000",
                    "to_ProductionOrderOperation": {"results": ops},
                }
            )
        for lot in (lot for lots in self.lots.values() for lot in lots):
            doc_no += 1
            docs.append(
                matdoc(
                    doc_no,
                    lot.received,
                    [
                        {
                            "Material": lot.material,
                            "Batch": lot.batch,
                            "GoodsMovementType": "101",
                            "Supplier": lot.supplier,
                            "PurchaseOrder": f"45{rng.randint(10**7, 10**8 - 1)}",
                            "QuantityInEntryUnit": f"{lot.size:.3f}",
                            "EntryUnit": unit_of(lot.material),
                        }
                    ],
                )
            )
            made = lot.received - timedelta(days=rng.randint(5, 40))
            batches.append(
                {
                    "__metadata": {"type": "API_BATCH_SRV.BatchType"},
                    "Material": lot.material,
                    "BatchIdentifyingPlant": PLANT,
                    "Batch": lot.batch,
                    "Supplier": lot.supplier,
                    "BatchBySupplier": f"{lot.supplier[-3:]}-{rng.randint(10000, 99999)}",
                    "ManufactureDate": sap_date(made),
                }
            )
        docs.sort(key=lambda d: d["MaterialDocument"])
        for name, rows in (
            ("A_Product", products),
            ("Batch", batches),
            ("A_ProductionOrder_2", orders),
            ("A_MaterialDocumentHeader", docs),
        ):
            (folder / f"{name}.json").write_text(json.dumps(odata(rows)))
        for index in range(0, len(confs), 2000):  # paged as the service pages them
            link = f"ProdnOrdConf2?$skiptoken={index + 2000}" if index + 2000 < len(confs) else None
            name = f"ProdnOrdConf2_{index // 2000 + 1:02d}.json"
            (folder / name).write_text(json.dumps(odata(confs[index : index + 2000], link)))

    def _write_b2mml(self, folder: Path) -> None:
        weeks: dict[int, list[str]] = {}
        for order in self.orders:
            parts = [
                f"  <ProductionResponse>\n    <ID>PR-{order.order_id}</ID>\n"
                f"    <ProductionRequestID>{order.order_id}</ProductionRequestID>\n"
            ]
            for op in order.ops:
                parts.append(
                    f"    <SegmentResponse>\n      <ID>SR-{order.order_id}-{op.number}</ID>\n"
                    f"      <ProcessSegmentID>{op.number}</ProcessSegmentID>\n"
                    f"      <ActualStartTime>{iso(op.start)}</ActualStartTime>\n"
                    f"      <ActualEndTime>{iso(op.end)}</ActualEndTime>\n"
                )
                hours: dict[str, float] = {}
                for s, e, who, _, _ in op.segs:
                    hours[who] = hours.get(who, 0.0) + (e - s).total_seconds() / 3600
                parts += [
                    f"      <PersonnelActual><PersonID>{p}</PersonID>{quantity(h, 'h')}"
                    "</PersonnelActual>\n"
                    for p, h in hours.items()
                ]
                parts.append(
                    f"      <EquipmentActual><EquipmentID>{op.machine}</EquipmentID>"
                    "</EquipmentActual>\n"
                )
                used = [(lot.material, lot.batch, "Consumed", q) for lot, q in op.lots]
                if op is order.ops[-1]:
                    used.append(
                        (order.product, f"F{order.order_id}", "Produced", op.qty_in - op.scrap)
                    )
                parts += [
                    f"      <MaterialActual>\n        <MaterialDefinitionID>{escape(m)}"
                    f"</MaterialDefinitionID>\n        <MaterialLotID>{b}</MaterialLotID>\n"
                    f"        <MaterialUse>{use}</MaterialUse>\n        "
                    f"{quantity(q, unit_of(m))}\n      </MaterialActual>\n"
                    for m, b, use, q in used
                ]
                parts.append("    </SegmentResponse>\n")
            week = (order.ops[0].start - START).days // 7
            weeks.setdefault(week, []).append("".join(parts) + "  </ProductionResponse>\n")
        for week, responses in weeks.items():
            text = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<ProductionPerformance xmlns='
                f'"http://www.mesa.org/xml/B2MML-V0600">\n  <ID>PP-{PLANT}-W{week + 1:02d}'
                "</ID>\n" + "".join(responses) + "</ProductionPerformance>\n"
            )
            (folder / f"production_performance_w{week + 1:02d}.xml").write_text(text)

    def _write_mtconnect(self, folder: Path) -> None:
        """Weekly agent /sample pages; one execution change per machine and second."""
        keep = {(m, iso(t)): i for i, (t, m, kind, _) in enumerate(self.mtc) if kind == "exec"}
        weeks: dict[int, dict[tuple[str, str], list[str]]] = {}
        for index, (t, machine, kind, data) in enumerate(self.mtc):
            if kind == "exec" and keep[(machine, iso(t))] != index:
                continue
            stamp = f'timestamp="{iso(t)}" sequence="{1000 + index}"'
            if kind == "exec":
                line, section = f'<Execution dataItemId="exec" {stamp}>{data[0]}</Execution>', "E"
            elif kind == "sample":
                line, section = f'<Load dataItemId="Sload" {stamp}>{data[1]}</Load>', "S"
            elif data[1] == "Normal":
                line, section = f'<Normal dataItemId="{data[0]}" {stamp} type="{data[2]}"/>', "C"
            else:
                item, level, type_, code, text = data
                line = (
                    f'<{level} dataItemId="{item}" {stamp} type="{type_}" nativeCode="{code}">'
                    f"{escape(text)}</{level}>"
                )
                section = "C"
            week = weeks.setdefault((t - START).days // 7, {})
            week.setdefault((machine, section), []).append(line)

        def block(tag: str, lines: list[str]) -> str:
            body = "".join(f"          {x}\n" for x in lines)
            return f"        <{tag}>\n{body}        </{tag}>\n" if lines else ""

        for week, blocks in weeks.items():
            out = [
                '<?xml version="1.0" encoding="UTF-8"?>\n<MTConnectStreams xmlns="urn:mtconnect'
                f'.org:MTConnectStreams:1.3">\n  <Header creationTime="'
                f'{iso(START + timedelta(weeks=week + 1))}" sender="mtc-agent-2300" '
                'instanceId="1740990000" version="1.3.1.0" bufferSize="1048576"/>\n'
                "  <Streams>\n"
            ]
            for m in MACHINE_WC:
                out.append(
                    f'    <DeviceStream name="{m}" uuid="eq-{m}">\n      <ComponentStream'
                    ' component="Controller" name="ctrl" componentId="c1">\n'
                    + block("Events", blocks.get((m, "E"), []))
                    + block("Condition", blocks.get((m, "C"), []))
                    + "      </ComponentStream>\n"
                )
                if (m, "S") in blocks:
                    out.append(
                        '      <ComponentStream component="Rotary" name="S1" componentId='
                        '"s1">\n'
                        + block("Samples", blocks[(m, "S")])
                        + "      </ComponentStream>\n"
                    )
                out.append("    </DeviceStream>\n")
            out.append("  </Streams>\n</MTConnectStreams>\n")
            (folder / f"mtconnect_sample_w{week + 1:02d}.xml").write_text("".join(out))

    def ground_truth(self) -> dict[str, Any]:
        causes = []
        for name, cause in self.causes.items():
            if cause["key"] is None:
                continue  # e.g. no batch of that material arrived late enough
            params = {
                k: iso(v) if isinstance(v, datetime) else v
                for k, v in cause.items()
                if k not in ("label", "key", "uses")
            }
            causes.append(
                {
                    "mechanism": name,
                    "label": cause["label"],
                    "key": cause["key"],
                    "deviations": sorted(d for d, c in self.blame.items() if c == name),
                    "parameters": params,
                }
            )
        return {
            "plant": PLANT,
            "causes": causes,
            "unexplained": sorted(d for d, c in self.blame.items() if not c),
            "operations": sum(len(o.ops) for o in self.orders),
            "orders": len(self.orders),
        }


def quantity(value: float, unit: str) -> str:
    return (
        f"<Quantity><QuantityString>{value:g}</QuantityString>"
        f"<UnitOfMeasure>{unit}</UnitOfMeasure></Quantity>"
    )


def matdoc(number: int, posted: datetime, items: list[dict[str, Any]]) -> dict[str, Any]:
    """An A_MaterialDocumentHeader with its items (the posting date lives on the header)."""
    year = str(posted.year)
    return {"__metadata": {"type": "API_MATERIAL_DOCUMENT_SRV.A_MaterialDocumentHeaderType"},
            "MaterialDocumentYear": year, "MaterialDocument": str(number),
            "DocumentDate": sap_date(posted), "PostingDate": sap_date(posted),
            "to_MaterialDocumentItem": {"results": [
                {"MaterialDocumentYear": year, "MaterialDocument": str(number),
                 "MaterialDocumentItem": str(i), "Plant": PLANT, "StorageLocation": "0001", **item}
                for i, item in enumerate(items, 1)]}}  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate(out: Path, seed: int, weeks: int = 6) -> dict[str, Any]:
    """Write the plant of ``seed`` under ``out`` and return its ground truth."""
    plant = Plant(seed, weeks)
    plant.build()
    plant.background()
    return plant.write(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (erp/, mes/, worker/, ground truth)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--weeks", type=int, default=6)
    args = parser.parse_args()
    truth = generate(args.out, args.seed, args.weeks)
    per_cause = {c["mechanism"]: len(c["deviations"]) for c in truth["causes"]}
    total = sum(per_cause.values()) + len(truth["unexplained"])
    print(
        json.dumps(
            {
                "operations": truth["operations"],
                "deviations": total,
                "per_cause": per_cause,
                "unexplained": len(truth["unexplained"]),
            }
        )
    )


if __name__ == "__main__":
    main()
