"""The demo plant: a machining site over several weeks, written in the same real export formats
opsgraph reads (SAP OData v2, B2MML, MTConnect, CMMS/MES CSV, SafetyCulture, worker CSVs),
with injected root causes and a ground-truth file naming, for each cause, the deviations it
produced, so ingest, the deviation rules and root-cause analysis can be exercised and
measured. Deterministic per seed; ``scale`` multiplies the number of lines.

Injected causes (each in every block of three lines):

- ``supplier_lot``: one supplier batch of bar stock machines out of tolerance: scrap and
  failed bore checks on the operations that consumed it.
- ``worn_tool``: a preventive maintenance that was missed; the mill's spindle degrades until a
  corrective repair: vibration faults, failed start-of-shift checks and scrap.
- ``uncertified_operator``: an operator whose milling certification expired keeps running
  mills, with more scrap.
- ``changeover_drift``: after some changeovers on a lathe the first order runs with a drifted
  temperature and fails its diameter checks.

Noise: a small base scrap everywhere, random scrap spikes (deviations no cause explains,
listed as ``unexplained`` in the ground truth), short unplanned stops, coolant warnings, and
red herrings (a supplier that delivers most lots, an operator on most shifts).

``variants`` switch on what real plants' exports lack or contain (``VARIANTS``), so that
root-cause analysis is measured on a family of plants rather than on one generator setting.
"""

from __future__ import annotations

import csv
import json
import random
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .deviations import Thresholds, deviation_id

START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
SHIFTS = (("A", 6), ("B", 14))  # crew, start hour; 8-hour shifts
MACHINE_KINDS = (
    ("mill", "CNC-MILL"),
    ("mill", "CNC-MILL"),
    ("lathe", "CNC-TURN"),
    ("grinder", "GRIND"),
)
RAW_MATERIALS = (
    ("RM-AL6061-BAR", "Aluminium 6061 bar"),
    ("RM-42CRMO4-BAR", "Steel 42CrMo4 bar"),
    ("RM-CUZN39-BAR", "Brass CuZn39Pb3 bar"),
)
CHECKS = {  # characteristic, nominal, tolerance, unit
    "mill": ("bore_diameter", 42.0, 0.010, "mm"),
    "lathe": ("shaft_diameter", 20.0, 0.008, "mm"),
    "grinder": ("roughness_ra", 0.40, 0.40, "um"),
}
FIRST = (
    "Jana",
    "Luis",
    "Eva",
    "Tom",
    "Mira",
    "Jonas",
    "Aylin",
    "Piotr",
    "Sara",
    "Felix",
    "Nora",
    "Milan",
    "Lea",
    "Omar",
    "Ines",
    "Karl",
    "Rosa",
    "Timo",
    "Hanna",
    "Emil",
)
LAST = (
    "Keller",
    "Ortega",
    "Roth",
    "Brandt",
    "Sahin",
    "Weber",
    "Demir",
    "Nowak",
    "Lind",
    "Huber",
    "Costa",
    "Vogel",
    "Berg",
    "Haddad",
    "Marek",
    "Frank",
    "Silva",
    "Koch",
    "Lang",
    "Adler",
)
SAP_DATE = "/Date({})/"
VARIANTS = {
    "no-machine-types": "the equipment master carries no machine types (SAP work centers and "
    "MTConnect devices have none)",
    "no-certifications": "no skills matrix: nobody's certifications are known",
    "no-maintenance-records": "no CMMS export: preventive maintenance is seen only as periodic "
    "SafetyCulture checklists, a skipped one as a missing checklist",
    "dominant-supplier": "one supplier per material delivers most lots, the bad batch among them",
    "alarm-noise": "warnings of every code on every machine, unrelated to quality",
    "busy-operators": "one operator per line works on most shifts, both crews",
    "degrading-machines": "a lathe or grinder per block of lines degrades for about two weeks and "
    "recovers, with no record saying why",
    "new-operators": "an operator moved to milling with no experience or certification record "
    "scraps more in the first weeks",
    "unexplained": "about 3 % more operations deviate for no recorded reason",
}
NOISE_ALARMS = (
    ("COOLANT_LOW", "Coolant level low"),
    ("SPINDLE_VIB", "Spindle vibration high"),
    ("AXIS_LOAD", "Axis load high"),
    ("DOOR_INTERLOCK", "Door opened during cycle"),
    ("LUBE_PRESSURE", "Lubrication pressure low"),
)


def _ms(moment: datetime) -> str:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return SAP_DATE.format(int(day.timestamp() * 1000))


def _pt(moment: datetime) -> str:
    return f"PT{moment.hour:02d}H{moment.minute:02d}M{moment.second:02d}S"


def _workday(moment: datetime) -> int:
    """Index of the moment's workday since START (weekends count as the Friday before)."""
    days = (moment - START).days
    return days // 7 * 5 + min(days % 7, 4)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Check:
    check_id: str
    characteristic: str
    value: float
    lower: float
    upper: float
    unit: str
    at: datetime

    @property
    def failed(self) -> bool:
        return not self.lower <= self.value <= self.upper


@dataclass
class Operation:
    order: str
    number: str
    machine: str
    kind: str
    person: str
    start: datetime
    end: datetime
    planned_start: datetime
    planned_end: datetime
    quantity: int
    scrap: int = 0
    lot: str | None = None
    checks: list[Check] = field(default_factory=list)
    causes: set[str] = field(default_factory=set)
    temperature_shift: float = 0.0
    vibration: bool = False

    @property
    def operation_id(self) -> str:
        return f"{self.order}/{self.number}"


@dataclass
class Order:
    order_id: str
    line: int
    product: str
    material: str
    quantity: int
    planned_start: datetime
    planned_end: datetime
    shift_id: str
    operations: list[Operation] = field(default_factory=list)

    @property
    def yield_quantity(self) -> int:
        return self.quantity - sum(op.scrap for op in self.operations)


@dataclass
class Cause:
    """One injected root cause and the entities it hides behind."""

    cause_id: str
    kind: str
    label: str
    key: str
    description: str
    related: list[tuple[str, str]] = field(default_factory=list)


class DemoPlant:
    """Builds and simulates the plant in memory; ``write`` turns it into source files."""

    def __init__(
        self,
        seed: int = 7,
        scale: float = 1.0,
        weeks: int = 6,
        variants: Iterable[str] = (),
    ) -> None:
        if scale <= 0 or weeks < 3:
            raise ValueError("scale must be positive and weeks at least 3")
        self.variants = frozenset(variants)
        unknown = sorted(self.variants - set(VARIANTS))
        if unknown:
            raise ValueError(
                f"unknown demo variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}"
            )
        self.rng = random.Random(seed)
        # Variants draw from their own generator so that switching one on leaves the rest of
        # the plant as it was.
        self.vrng = random.Random(seed * 7919 + 17)
        self.seed, self.scale, self.weeks = seed, scale, weeks
        self.lines = list(range(1, max(1, round(3 * scale)) + 1))
        self.machines: dict[str, tuple[int, str, str]] = {}  # id -> line, kind, skill
        self.products: dict[str, tuple[int, str]] = {}  # id -> line, raw material
        self.suppliers: dict[str, str] = {}  # id -> raw material
        self.lots: dict[str, tuple[str, str, datetime]] = {}  # lot -> supplier, material, received
        self.people: dict[str, dict[str, Any]] = {}
        self.crews: dict[tuple[int, str], list[str]] = {}
        self.orders: list[Order] = []
        self.maintenance: list[dict[str, Any]] = []
        self.changeovers: list[dict[str, Any]] = []
        self.stops: list[tuple[str, datetime, datetime, str]] = []  # machine, start, end, reason
        self.alarms: list[tuple[str, str, str, str, datetime, datetime]] = []
        self.audits: list[dict[str, Any]] = []
        self.floaters: dict[int, str] = {}  # line -> operator on most shifts (busy-operators)
        self.causes: list[Cause] = []
        self._build()
        self._simulate()

    # -- master data ------------------------------------------------------------------------

    def _build(self) -> None:
        rng = self.rng
        for line in self.lines:
            for k, (kind, skill) in enumerate(MACHINE_KINDS, start=1):
                self.machines[f"M-{100 * line + k}"] = (line, kind, skill)
            for j in (1, 2):
                material = RAW_MATERIALS[(line + j) % len(RAW_MATERIALS)][0]
                self.products[f"FG-{line:02d}{j}"] = (line, material)
        blocks = max(1, len(self.lines) // 3)
        number = 101
        for material, _ in RAW_MATERIALS:
            for _ in range(2 * blocks):
                self.suppliers[f"S-{number}"] = material
                number += 1
        person = 4000
        for line in self.lines:
            for crew, _ in SHIFTS:
                members = []
                for _ in range(3):
                    pid = f"{person:08d}"
                    person += 1
                    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                    skills = {
                        skill: (rng.randint(2, 4), "yes", START + timedelta(days=400))
                        for skill in ("CNC-MILL", "CNC-TURN", "GRIND")
                    }
                    self.people[pid] = {
                        "name": name,
                        "role": "machine operator",
                        "skills": skills,
                        "user": f"user_{rng.getrandbits(64):016x}",
                    }
                    members.append(pid)
                self.crews[(line, crew)] = members
        if "busy-operators" in self.variants:
            for line in self.lines:
                pid = f"{person:08d}"
                person += 1
                self.people[pid] = {
                    "name": f"{self.vrng.choice(FIRST)} {self.vrng.choice(LAST)}",
                    "role": "machine operator",
                    "skills": {s: (4, "yes", START + timedelta(days=400)) for s in
                               ("CNC-MILL", "CNC-TURN", "GRIND")},
                    "user": f"user_{self.vrng.getrandbits(64):016x}",
                }  # fmt: skip
                self.floaters[line] = pid
        self.engineer = "00003310"
        self.people[self.engineer] = {
            "name": "Mira Sahin",
            "role": "quality engineer",
            "skills": {},
            "user": "user_qe3310",
        }
        self.planner = "00003320"
        self.people[self.planner] = {
            "name": "Karl Berg",
            "role": "maintenance planner",
            "skills": {},
            "user": "user_mp3320",
        }

    def _workdays(self) -> list[datetime]:
        return [START + timedelta(days=7 * w + d) for w in range(self.weeks) for d in range(5)]

    # -- simulation ---------------------------------------------------------------------------

    def _simulate(self) -> None:
        rng = self.rng
        days = self._workdays()
        lot_of: dict[str, str] = {}
        batch = 7000 + rng.randint(0, 500)
        # Lot deliveries: every supplier delivers a new batch every ~5 workdays; one supplier
        # per material (the red herring) delivers more often.
        deliveries: dict[int, list[str]] = defaultdict(list)
        for index, supplier in enumerate(self.suppliers):
            every = 3 if index % 2 == 0 else 6
            for d in range(0, len(days), every):
                deliveries[d].append(supplier)
        injected = self._choose_causes()
        previous_product: dict[int, str] = {}
        order_number = 1000000
        for d, day in enumerate(days):
            for supplier in deliveries[d]:
                batch += 1
                lot = f"{self.suppliers[supplier]}/{batch}"
                self.lots[lot] = (supplier, self.suppliers[supplier], day + timedelta(hours=5))
                lot_of[supplier] = lot
            for line in self.lines:
                for crew, hour in SHIFTS:
                    order_number += 1
                    shift_start = day + timedelta(hours=hour)
                    product = previous_product.get(line, f"FG-{line:02d}1")
                    if rng.random() < 0.3:
                        product = f"FG-{line:02d}{1 if product.endswith('2') else 2}"
                    changed = previous_product.get(line) not in (None, product)
                    previous_product[line] = product
                    material = self.products[product][1]
                    candidates = [
                        s for s, m in self.suppliers.items() if m == material and s in lot_of
                    ]
                    supplier = rng.choice(candidates)
                    dominant = self._dominant(material)
                    if dominant in candidates and self.vrng.random() < 0.8:
                        supplier = dominant
                    order = Order(
                        str(order_number),
                        line,
                        product,
                        material,
                        rng.randint(8, 20) * 10,
                        shift_start,
                        shift_start + timedelta(hours=8),
                        f"L{line}-{day:%Y-%m-%d}-{crew}",
                    )
                    self._operations(order, crew, shift_start, lot_of[supplier], changed, injected)
                    self.orders.append(order)
            self._maintenance_day(d, day, injected)
            self._audits(day, injected)

    def _dominant(self, material: str) -> str | None:
        """The supplier delivering most lots of a material (dominant-supplier variant)."""
        if "dominant-supplier" not in self.variants:
            return None
        return next(s for s, m in self.suppliers.items() if m == material)

    def _choose_causes(self) -> dict[str, Any]:
        """Pick, per block of three lines, the entities behind each injected cause."""
        rng = self.rng
        chosen: dict[str, Any] = {
            "bad_lots": {},
            "worn": {},
            "uncertified": {},
            "drift": {},
            "degrading": {},
            "new": {},
        }
        for block in range(max(1, len(self.lines) // 3)):
            lines = self.lines[3 * block : 3 * block + 3]
            # worn tool: a mill whose first preventive maintenance after week 2 is missed
            mill = f"M-{100 * rng.choice(lines) + rng.choice((1, 2))}"
            workdays = 5 * self.weeks
            missed = next(
                d for d in range(workdays // 3, workdays) if (d + int(mill[2:])) % 10 == 0
            )
            chosen["worn"][mill] = (missed, missed + max(4, workdays // 4))
            # uncertified operator on a line of the block
            line = rng.choice(lines)
            person = rng.choice(self.crews[(line, rng.choice(("A", "B")))])
            self.people[person]["skills"]["CNC-MILL"] = (1, "expired", START - timedelta(days=20))
            chosen["uncertified"][person] = line
            # drift: the lathe of a line, after changeovers
            lathe = f"M-{100 * rng.choice(lines) + 3}"
            chosen["drift"][lathe] = 0
            workdays = 5 * self.weeks
            vrng = self.vrng
            if "degrading-machines" in self.variants:
                options = [f"M-{100 * line + k}" for line in lines for k in (3, 4)]
                machine = vrng.choice([m for m in options if m != lathe])
                begin = vrng.randint(workdays // 5, workdays // 2)
                chosen["degrading"][machine] = (begin, begin + 10)
            if "new-operators" in self.variants:
                line = vrng.choice(lines)
                crew = vrng.choice(("A", "B"))
                members = [p for p in self.crews[(line, crew)] if p not in chosen["uncertified"]]
                person = vrng.choice(members)
                self.people[person]["skills"].pop("CNC-MILL", None)
                begin = vrng.randint(workdays // 4, workdays // 2)
                chosen["new"][person] = (begin, begin + 10)
        return chosen

    def _operations(
        self,
        order: Order,
        crew: str,
        shift_start: datetime,
        lot: str,
        changed: bool,
        injected: dict[str, Any],
    ) -> None:
        rng = self.rng
        line = order.line
        members = self.crews[(line, crew)]
        t = shift_start + timedelta(minutes=rng.randint(5, 20))
        plan = shift_start
        mill = 1 if rng.random() < 0.5 else 2
        for index, k in enumerate((mill, 3, 4)):
            machine = f"M-{100 * line + k}"
            kind = self.machines[machine][1]
            person = members[(k + shift_start.day) % len(members)]
            person = self._assign(person, members, line, kind, shift_start, injected)
            duration = timedelta(minutes=rng.randint(100, 140))
            op = Operation(
                order.order_id,
                f"{(index + 1) * 10:04d}",
                machine,
                kind,
                person,
                t,
                t + duration,
                plan,
                plan + timedelta(minutes=150),
                order.quantity,
            )
            if index == 0:
                op.lot = lot
            if changed:
                co_id = f"CO-{machine}-{_iso(t)}"
                self.changeovers.append(
                    {
                        "changeover_id": co_id,
                        "machine_id": machine,
                        "to_product": order.product,
                        "start": _iso(t - timedelta(minutes=25)),
                        "end": _iso(t - timedelta(minutes=5)),
                    }
                )
                if machine in injected["drift"] and rng.random() < 0.5:
                    op.causes.add(f"changeover_drift:{co_id}")
                    op.temperature_shift = rng.uniform(6, 10)
            self._effects(op, injected)
            self._base_noise(op)
            if rng.random() < 0.04:  # an unplanned stop
                stop = op.start + timedelta(minutes=rng.randint(20, 60))
                length = timedelta(minutes=rng.randint(16, 45))
                self.stops.append((machine, stop, stop + length, "INTERRUPTED"))
                op.end += length
            self._quality(op)
            order.operations.append(op)
            t = op.end + timedelta(minutes=rng.randint(5, 15))
            plan += timedelta(minutes=160)

    def _assign(
        self,
        person: str,
        members: list[str],
        line: int,
        kind: str,
        at: datetime,
        injected: dict[str, Any],
    ) -> str:
        """Who runs an operation under the variants: a newcomer to milling runs no mill before
        the day they move there; a line's floater takes half of all work."""
        new = injected["new"].get(person)
        if new and kind == "mill" and _workday(at) < new[0]:
            person = next(p for p in members if p != person)
        if line in self.floaters and self.vrng.random() < 0.5:
            person = self.floaters[line]
        return person

    def _effects(self, op: Operation, injected: dict[str, Any]) -> None:
        rng = self.rng
        day = _workday(op.start)
        if op.lot and self._bad_lot(op.lot, injected) and rng.random() < 0.85:
            op.causes.add(f"supplier_lot:{op.lot}")
        window = injected["worn"].get(op.machine)
        if window and window[0] <= day < window[1] and rng.random() < 0.75:
            op.causes.add(f"worn_tool:{op.machine}")
            op.vibration = True
        if op.kind == "mill" and op.person in injected["uncertified"] and rng.random() < 0.65:
            op.causes.add(f"uncertified_operator:{op.person}")
        vrng = self.vrng
        window = injected["degrading"].get(op.machine)
        if window and window[0] <= day < window[1]:
            # wear builds up over the period: ever more of the work goes wrong
            progress = (day - window[0] + 1) / (window[1] - window[0])
            if vrng.random() < 0.35 + 0.5 * progress:
                op.causes.add(f"machine_degradation:{op.machine}")
                op.temperature_shift = max(op.temperature_shift, vrng.uniform(2, 4))
            if vrng.random() < 0.5:
                at = op.start + timedelta(minutes=vrng.randint(5, 90))
                self.alarms.append(
                    (op.machine, "AXIS_LOAD", "Warning", "Axis load high", at,
                     at + timedelta(minutes=vrng.randint(3, 15)))
                )  # fmt: skip
        window = injected["new"].get(op.person)
        if window and op.kind == "mill" and window[0] <= day < window[1]:
            if vrng.random() < 0.6:
                op.causes.add(f"new_operator:{op.person}")
        if op.causes:
            op.scrap = max(op.scrap, round(op.quantity * rng.uniform(0.07, 0.15)))

    def _bad_lot(self, lot: str, injected: dict[str, Any]) -> bool:
        """One delivery per block of one supplier is the bad batch (decided when first seen)."""
        marks = injected.setdefault("bad_lot_ids", {})
        if lot not in marks:
            supplier, material, received = self.lots[lot]
            index = list(self.suppliers).index(supplier)
            day = (received - START).days
            # the less frequent supplier of each pair, or the dominant one when there is one
            block_first = index % 2 == (0 if self._dominant(material) else 1)
            marks[lot] = (
                block_first
                and 0.3 * 7 * self.weeks <= day <= 0.6 * 7 * self.weeks
                and not any(v and self.lots[k][0] == supplier for k, v in marks.items())
            )
        return marks[lot]

    def _base_noise(self, op: Operation) -> None:
        rng = self.rng
        if not op.causes:
            rate = rng.uniform(0.0, 0.006) if rng.random() > 0.03 else rng.uniform(0.05, 0.09)
            op.scrap = round(op.quantity * rate)
            if "unexplained" in self.variants and self.vrng.random() < 0.03:
                op.scrap = round(op.quantity * self.vrng.uniform(0.07, 0.15))

    def _quality(self, op: Operation) -> None:
        rng = self.rng
        characteristic, nominal, tolerance, unit = CHECKS[op.kind]
        lower = 0.0 if op.kind == "grinder" else nominal - tolerance
        upper = nominal + tolerance
        for n in (1, 2):
            shift = 0.0
            if any(
                c.startswith(
                    ("supplier_lot", "worn_tool", "changeover_drift", "machine_degradation")
                )
                for c in op.causes
            ):
                shift = tolerance * rng.uniform(1.1, 1.8) if rng.random() < 0.7 else 0.0
            value = nominal + rng.gauss(0, tolerance / 4) + shift
            if op.kind == "grinder":
                value = abs(value)
            op.checks.append(
                Check(
                    f"QC-{op.order}-{op.number}-{n:02d}",
                    characteristic,
                    round(value, 4),
                    lower,
                    upper,
                    unit,
                    op.start + (op.end - op.start) * (n / 3),
                )
            )

    def _maintenance_day(self, d: int, day: datetime, injected: dict[str, Any]) -> None:
        rng = self.rng
        for machine in self.machines:
            if (d + int(machine[2:])) % 10 != 0:
                continue
            window = injected["worn"].get(machine)
            status = "missed" if window and d == window[0] else "done"
            if status == "done":
                self._pm_checklist(machine, day + timedelta(hours=5))
            self.maintenance.append(
                {
                    "maintenance_id": f"PM-{machine}-{day:%Y%m%d}",
                    "machine_id": machine,
                    "maintenance_type": "preventive",
                    "status": status,
                    "description": "Spindle, tool clamp and coolant check",
                    "scheduled_at": _iso(day + timedelta(hours=5)),
                    "start": _iso(day + timedelta(hours=5)) if status == "done" else "",
                    "end": _iso(day + timedelta(hours=5, minutes=45)) if status == "done" else "",
                }
            )
        for machine, (_, repaired) in injected["worn"].items():
            if d == repaired:
                self._pm_checklist(machine, day + timedelta(hours=4))
                self.maintenance.append(
                    {
                        "maintenance_id": f"CM-{machine}-{day:%Y%m%d}",
                        "machine_id": machine,
                        "maintenance_type": "corrective",
                        "status": "done",
                        "description": "Replaced worn spindle bearing",
                        "scheduled_at": _iso(day + timedelta(hours=4)),
                        "start": _iso(day + timedelta(hours=4)),
                        "end": _iso(day + timedelta(hours=5, minutes=50)),
                    }
                )
        if "alarm-noise" in self.variants:
            vrng = self.vrng
            for machine in self.machines:
                for _ in range(vrng.choice((0, 1, 1, 2, 3))):
                    code, message = vrng.choice(NOISE_ALARMS)
                    at = day + timedelta(hours=vrng.randint(6, 21), minutes=vrng.randint(0, 59))
                    self.alarms.append(
                        (machine, code, "Warning", message, at,
                         at + timedelta(minutes=vrng.randint(3, 30)))
                    )  # fmt: skip
        if rng.random() < 0.5:
            machine = rng.choice(list(self.machines))
            at = day + timedelta(hours=rng.randint(7, 20), minutes=rng.randint(0, 59))
            self.alarms.append(
                (
                    machine,
                    "COOLANT_LOW",
                    "Warning",
                    "Coolant level low",
                    at,
                    at + timedelta(minutes=rng.randint(5, 30)),
                )
            )

    def _pm_checklist(self, machine: str, at: datetime) -> None:
        """Maintenance done, as a plant without a CMMS export records it: a checklist."""
        if "no-maintenance-records" in self.variants:
            self.audits.append(
                {"machine": machine, "day": at, "person": self.planner, "failing": False,
                 "template": "pm"}
            )  # fmt: skip

    def _audits(self, day: datetime, injected: dict[str, Any]) -> None:
        for machine, (line, kind, _) in self.machines.items():
            if kind != "mill":
                continue
            window = injected["worn"].get(machine)
            failing = bool(window and window[0] <= _workday(day) < window[1])
            person = self.crews[(line, "A")][0]
            self.audits.append(
                {"machine": machine, "day": day + timedelta(hours=5, minutes=50),
                 "person": person, "failing": failing, "template": "start_of_shift"}
            )  # fmt: skip

    # -- ground truth -------------------------------------------------------------------------

    def deviations_by_cause(self, limits: Thresholds | None = None) -> dict[str, dict[str, Any]]:
        """The deviations the rules will find that each injected cause produced."""
        limits = limits or Thresholds()
        causes: dict[str, dict[str, Any]] = {}
        for order in self.orders:
            for op in order.operations:
                if not op.causes:
                    continue
                found = []
                rate = op.scrap / op.quantity if op.quantity else 0
                if op.scrap and rate >= limits.scrap_rate:
                    found.append(deviation_id("SCRAP", op.operation_id))
                found += [deviation_id("QC", c.check_id) for c in op.checks if c.failed]
                for cause in op.causes:
                    entry = causes.setdefault(cause, {"deviations": []})
                    entry["deviations"] += found
        return causes

    def unexplained(self, limits: Thresholds | None = None) -> list[str]:
        """Deviations the rules will find that no injected cause produced (noise)."""
        limits = limits or Thresholds()
        found = []
        for order in self.orders:
            for op in order.operations:
                if op.causes:
                    continue
                if op.scrap and op.scrap / op.quantity >= limits.scrap_rate:
                    found.append(deviation_id("SCRAP", op.operation_id))
                found += [deviation_id("QC", c.check_id) for c in op.checks if c.failed]
        return sorted(found)

    def cause_entities(self, cause: str) -> dict[str, Any]:
        kind, key = cause.split(":", 1)
        if kind == "supplier_lot":
            supplier = self.lots[key][0]
            return {
                "label": "MaterialLot",
                "key": key,
                "related": [["Supplier", supplier]],
                "description": f"Batch {key} from supplier {supplier} machines out of tolerance",
            }
        if kind == "worn_tool" and "no-maintenance-records" in self.variants:
            return {
                "label": "Machine",
                "key": key,
                "related": [],
                "description": f"Worn spindle on {key} after a skipped preventive maintenance "
                "(no checklist that week)",
            }
        if kind == "machine_degradation":
            return {
                "label": "Machine",
                "key": key,
                "related": [],
                "description": f"{key} degraded for two weeks and recovered",
            }
        if kind == "new_operator":
            return {
                "label": "Person",
                "key": key,
                "related": [],
                "description": f"Operator {key} moved to milling without experience",
            }
        if kind == "worn_tool":
            missed = next(
                m["maintenance_id"]
                for m in self.maintenance
                if m["machine_id"] == key and m["status"] == "missed"
            )
            return {
                "label": "MaintenanceEvent",
                "key": missed,
                "related": [["Machine", key]],
                "description": f"Missed preventive maintenance {missed}: worn spindle on {key}",
            }
        if kind == "uncertified_operator":
            return {
                "label": "Person",
                "key": key,
                "related": [["Skill", "CNC-MILL"]],
                "description": f"Operator {key} runs mills with an expired certification",
            }
        machine = key.split("-2026")[0].removeprefix("CO-")
        return {
            "label": "Changeover",
            "key": key,
            "related": [["Machine", machine]],
            "description": f"Temperature drift on {machine} after changeover {key}",
        }


class DemoWriter:
    """Writes a simulated plant as source files in their real formats."""

    def __init__(self, plant: DemoPlant, out: Path) -> None:
        self.plant = plant
        self.out = Path(out)

    def write(self) -> dict[str, Any]:
        for folder in ("erp", "mes", "worker", "worker/audits"):
            (self.out / folder).mkdir(parents=True, exist_ok=True)
        self._orders()
        self._confirmations()
        self._material_documents()
        self._performance()
        self._mtconnect()
        self._tables()
        self._worker()
        truth = self._ground_truth()
        (self.out / "ground_truth.json").write_text(json.dumps(truth, indent=1))
        (self.out / "aliases.toml").write_text(self._aliases())
        return truth

    # -- ERP (SAP S/4HANA OData v2) --------------------------------------------------------------

    def _pages(self, name: str, entity_set: str, entities: list[dict], size: int = 250) -> None:
        pages = [entities[i : i + size] for i in range(0, len(entities), size)] or [[]]
        for n, page in enumerate(pages, start=1):
            body: dict[str, Any] = {"results": page}
            if n < len(pages):
                body["__next"] = f"{entity_set}?$skiptoken={n * size}"
            path = self.out / "erp" / f"{name}_{n:03d}.json"
            path.write_text(json.dumps({"d": body}, separators=(",", ":")))

    def _orders(self) -> None:
        service = "https://s4.example.com/sap/opu/odata/sap/API_PRODUCTION_ORDER_2_SRV"
        entities = []
        for order in self.plant.orders:
            operations = [
                {
                    "__metadata": {
                        "type": "API_PRODUCTION_ORDER_2_SRV.A_ProductionOrderOperation_2Type"
                    },
                    "ManufacturingOrder": order.order_id,
                    "ManufacturingOrderSequence": "0",
                    "ManufacturingOrderOperation": op.number,
                    "MfgOrderOperationText": _op_text(op.kind),
                    "ProductionPlant": "1010",
                    "WorkCenter": f"WC-{op.machine}",
                    "OpErlstSchedldExecStrtDte": _ms(op.planned_start),
                    "OpErlstSchedldExecStrtTme": _pt(op.planned_start),
                    "OpErlstSchedldExecEndDte": _ms(op.planned_end),
                    "OpErlstSchedldExecEndTme": _pt(op.planned_end),
                    "OpActualExecutionStartDate": _ms(op.start),
                    "OpActualExecutionStartTime": _pt(op.start),
                    "OpActualExecutionEndDate": _ms(op.end),
                    "OpActualExecutionEndTime": _pt(op.end),
                    "OperationUnit": "PC",
                    "OpPlannedTotalQuantity": f"{op.quantity:.3f}",
                    "OpTotalConfirmedYieldQty": f"{op.quantity - op.scrap:.3f}",
                }
                for op in order.operations
            ]
            entities.append(
                {
                    "__metadata": {
                        "id": f"{service}/A_ProductionOrder_2('{order.order_id}')",
                        "type": "API_PRODUCTION_ORDER_2_SRV.A_ProductionOrder_2Type",
                    },
                    "ManufacturingOrder": order.order_id,
                    "ManufacturingOrderCategory": "10",
                    "ManufacturingOrderType": "PP01",
                    "OrderIsCreated": True,
                    "OrderIsReleased": True,
                    "OrderIsConfirmed": True,
                    "OrderIsTechnicallyCompleted": True,
                    "OrderIsClosed": False,
                    "Material": order.product,
                    "ProductionPlant": "1010",
                    "Plant": "1010",
                    "MfgOrderPlannedStartDate": _ms(order.planned_start),
                    "MfgOrderPlannedStartTime": _pt(order.planned_start),
                    "MfgOrderPlannedEndDate": _ms(order.planned_end),
                    "MfgOrderPlannedEndTime": _pt(order.planned_end),
                    "ProductionUnit": "PC",
                    "TotalQuantity": f"{order.quantity:.3f}",
                    "MfgOrderConfirmedYieldQty": f"{order.yield_quantity:.3f}",
                    "to_ProductionOrderOperation": {"results": operations},
                }
            )
        self._pages("production_orders", f"{service}/A_ProductionOrder_2", entities)

    def _confirmations(self) -> None:
        entities = []
        group = 4700000
        for order in self.plant.orders:
            for op in order.operations:
                group += 1
                entities.append(
                    {
                        "__metadata": {
                            "type": "API_PROD_ORDER_CONFIRMATION_2_SRV.ProdnOrdConf2Type"
                        },
                        "ConfirmationGroup": f"{group:010d}",
                        "ConfirmationCount": "00000001",
                        "OrderID": order.order_id,
                        "Sequence": "0",
                        "OrderOperation": op.number,
                        "OrderType": "PP01",
                        "Material": order.product,
                        "Plant": "1010",
                        "WorkCenter": f"WC-{op.machine}",
                        "Personnel": op.person,
                        "IsFinalConfirmation": True,
                        "IsReversed": False,
                        "IsReversal": False,
                        "PostingDate": _ms(op.end),
                        "ConfirmedExecutionStartDate": _ms(op.start),
                        "ConfirmedExecutionStartTime": _pt(op.start),
                        "ConfirmedExecutionEndDate": _ms(op.end),
                        "ConfirmedExecutionEndTime": _pt(op.end),
                        "ConfirmationUnit": "PC",
                        "ConfirmationYieldQuantity": f"{op.quantity - op.scrap:.3f}",
                        "ConfirmationScrapQuantity": f"{op.scrap:.3f}",
                        "ConfirmationReworkQuantity": "0.000",
                        "VarianceReasonCode": "0004" if op.scrap else "",
                    }
                )
        self._pages("confirmations", "ProdnOrdConf2", entities, size=1000)

    def _material_documents(self) -> None:
        headers = []
        number = 5000000000
        for lot, (supplier, material, received) in sorted(
            self.plant.lots.items(), key=lambda x: x[1][2]
        ):
            number += 1
            headers.append(
                _header(
                    number,
                    received,
                    [
                        _item(
                            number,
                            1,
                            material,
                            lot.split("/")[1],
                            "101",
                            800,
                            "KG",
                            supplier=supplier,
                        )
                    ],
                )
            )
        number = 4900000000
        for order in self.plant.orders:
            number += 1
            first = order.operations[0]
            headers.append(
                _header(
                    number,
                    first.start,
                    [
                        _item(
                            number,
                            1,
                            order.material,
                            first.lot.split("/")[1],
                            "261",
                            round(order.quantity * 1.2, 1),
                            "KG",
                            order=order.order_id,
                        ),
                        _item(
                            number,
                            2,
                            order.product,
                            f"FG{order.order_id[-6:]}",
                            "101",
                            order.yield_quantity,
                            "PC",
                            order=order.order_id,
                        ),
                    ],
                )
            )
        self._pages("material_documents", "A_MaterialDocumentHeader", headers, size=500)

    # -- MES -------------------------------------------------------------------------------------

    def _performance(self) -> None:
        ns = "http://www.mesa.org/xml/B2MML-V0600"
        by_week: dict[int, list[Order]] = defaultdict(list)
        for order in self.plant.orders:
            by_week[(order.planned_start - START).days // 7].append(order)
        for week, orders in by_week.items():
            root = ET.Element(f"{{{ns}}}ProductionPerformance")
            ET.SubElement(root, f"{{{ns}}}ID").text = f"PP-1010-W{week + 1:02d}"
            for order in orders:
                response = ET.SubElement(root, f"{{{ns}}}ProductionResponse")
                ET.SubElement(response, f"{{{ns}}}ID").text = f"PR-{order.order_id}"
                ET.SubElement(response, f"{{{ns}}}ProductionRequestID").text = order.order_id
                for op in order.operations:
                    segment = ET.SubElement(response, f"{{{ns}}}SegmentResponse")
                    ET.SubElement(segment, f"{{{ns}}}ID").text = f"SR-{op.order}-{op.number}"
                    ET.SubElement(segment, f"{{{ns}}}ProcessSegmentID").text = op.number
                    ET.SubElement(segment, f"{{{ns}}}ActualStartTime").text = _iso(op.start)
                    ET.SubElement(segment, f"{{{ns}}}ActualEndTime").text = _iso(op.end)
                    personnel = ET.SubElement(segment, f"{{{ns}}}PersonnelActual")
                    ET.SubElement(personnel, f"{{{ns}}}PersonID").text = op.person
                    equipment = ET.SubElement(segment, f"{{{ns}}}EquipmentActual")
                    ET.SubElement(equipment, f"{{{ns}}}EquipmentID").text = op.machine
                    if op.lot:
                        material = ET.SubElement(segment, f"{{{ns}}}MaterialActual")
                        ET.SubElement(
                            material, f"{{{ns}}}MaterialDefinitionID"
                        ).text = order.material
                        ET.SubElement(material, f"{{{ns}}}MaterialLotID").text = op.lot.split("/")[
                            1
                        ]
                        ET.SubElement(material, f"{{{ns}}}MaterialUse").text = "Consumed"
                        quantity = ET.SubElement(material, f"{{{ns}}}Quantity")
                        ET.SubElement(
                            quantity, f"{{{ns}}}QuantityString"
                        ).text = f"{order.quantity * 1.2:.1f}"
                        ET.SubElement(quantity, f"{{{ns}}}UnitOfMeasure").text = "KG"
            _write_xml(root, ns, self.out / "mes" / f"production_performance_w{week + 1:02d}.xml")

    def _mtconnect(self) -> None:
        """One Streams document per day, as an agent's /sample answer pulled each night."""
        events: dict[datetime, dict[str, list[tuple[datetime, str, dict[str, str], str]]]] = (
            defaultdict(lambda: defaultdict(list))
        )
        rng = random.Random(self.plant.seed + 1)
        for order in self.plant.orders:
            for op in order.operations:
                day = op.start.replace(hour=0, minute=0, second=0)
                stream = events[day][op.machine]
                stream.append((op.start - timedelta(minutes=3), "Execution", {}, "READY"))
                stream.append((op.start, "Execution", {}, "ACTIVE"))
                stream.append((op.end, "Execution", {}, "READY"))
                for n in range(3):
                    at = op.start + (op.end - op.start) * ((n + 0.5) / 3)
                    temperature = 31.0 + rng.gauss(0, 0.8) + op.temperature_shift
                    vibration = 1.2 + abs(rng.gauss(0, 0.25)) + (2.5 if op.vibration else 0.0)
                    stream.append(
                        (at, "Temperature", {"name": "spindle_temp"}, f"{temperature:.2f}")
                    )
                    stream.append(
                        (at, "Displacement", {"name": "spindle_vibration"}, f"{vibration:.3f}")
                    )
                if op.vibration and rng.random() < 0.7:
                    at = op.start + timedelta(minutes=rng.randint(10, 60))
                    stream.append(
                        (
                            at,
                            "Fault",
                            {"type": "LOAD", "nativeCode": "SPINDLE_VIB"},
                            "Spindle vibration above limit",
                        )
                    )
                    stream.append((at + timedelta(minutes=8), "Normal", {"type": "LOAD"}, ""))
        for machine, start, end, reason in self.plant.stops:
            day = start.replace(hour=0, minute=0, second=0)
            events[day][machine] += [
                (start, "Execution", {}, reason),
                (end, "Execution", {}, "ACTIVE"),
            ]
        for machine, code, level, message, start, end in self.plant.alarms:
            day = start.replace(hour=0, minute=0, second=0)
            events[day][machine] += [
                (start, level, {"type": "SYSTEM", "nativeCode": code}, message),
                (end, "Normal", {"type": "SYSTEM"}, ""),
            ]
        ns = "urn:mtconnect.org:MTConnectStreams:2.0"
        sequence = 1
        for day in sorted(events):
            root = ET.Element(f"{{{ns}}}MTConnectStreams")
            ET.SubElement(
                root,
                f"{{{ns}}}Header",
                creationTime=_iso(day + timedelta(hours=23)),
                sender="agent-1010",
                instanceId="1757222400",
                version="2.0.0.1",
                bufferSize="131072",
            )
            streams = ET.SubElement(root, f"{{{ns}}}Streams")
            agent = ET.SubElement(streams, f"{{{ns}}}DeviceStream", name="Agent", uuid="agent-1010")
            component = ET.SubElement(
                agent, f"{{{ns}}}ComponentStream", component="Agent", componentId="agent"
            )
            availability = ET.SubElement(
                ET.SubElement(component, f"{{{ns}}}Events"),
                f"{{{ns}}}Availability",
                dataItemId="agent_avail",
                timestamp=_iso(day),
                sequence=str(sequence),
            )
            availability.text = "AVAILABLE"
            for machine in sorted(events[day]):
                device = ET.SubElement(
                    streams, f"{{{ns}}}DeviceStream", name=machine, uuid=f"uuid-{machine}"
                )
                controller = ET.SubElement(
                    device,
                    f"{{{ns}}}ComponentStream",
                    component="Controller",
                    name="controller",
                    componentId=f"{machine}-ctl",
                )
                sections = {
                    name: ET.SubElement(controller, f"{{{ns}}}{name}")
                    for name in ("Samples", "Events", "Condition")
                }
                for at, tag, attrs, value in sorted(events[day][machine], key=lambda e: e[0]):
                    sequence += 1
                    if tag == "Execution":
                        section, item = sections["Events"], f"{machine}-exec"
                    elif tag in ("Fault", "Warning", "Normal"):
                        section = sections["Condition"]
                        item = f"{machine}-{attrs.get('type', 'system').lower()}-cond"
                    else:
                        section, item = sections["Samples"], f"{machine}-{attrs['name']}"
                    element = ET.SubElement(
                        section,
                        f"{{{ns}}}{tag}",
                        dataItemId=item,
                        timestamp=_iso(at),
                        sequence=str(sequence),
                        **attrs,
                    )
                    element.text = value or None
            _write_xml(root, ns, self.out / "mes" / f"mtconnect_{day:%Y%m%d}.xml")

    def _tables(self) -> None:
        checks = [
            {
                "check_id": c.check_id,
                "operation_id": op.operation_id,
                "lot_id": "",
                "characteristic": c.characteristic,
                "value": f"{c.value:.4f}",
                "unit": c.unit,
                "lower_limit": f"{c.lower:.4f}",
                "upper_limit": f"{c.upper:.4f}",
                "result": "fail" if c.failed else "pass",
                "checked_at": _iso(c.at),
            }
            for order in self.plant.orders
            for op in order.operations
            for c in op.checks
        ]
        _csv(self.out / "mes" / "quality_checks.csv", checks)
        variants = self.plant.variants
        equipment = [
            {"machine_id": machine, "name": f"{kind.title()} {machine}", "machine_type": kind,
             "manufacturer": {"mill": "DMG Mori", "lathe": "Okuma", "grinder": "Studer"}[kind],
             "line_id": f"L{line}", "work_center_id": f"WC-{machine}"}
            for machine, (line, kind, _) in self.plant.machines.items()
        ]  # fmt: skip
        if "no-machine-types" in variants:
            for row in equipment:
                del row["machine_type"]
        _csv(self.out / "erp" / "equipment.csv", equipment)
        if "no-maintenance-records" not in variants:
            _csv(self.out / "mes" / "maintenance.csv", self.plant.maintenance)
        changeovers = [{**c, "from_product": ""} for c in self.plant.changeovers]
        _csv(self.out / "mes" / "changeovers.csv", changeovers)

    # -- connected worker ------------------------------------------------------------------------

    def _worker(self) -> None:
        plant = self.plant
        roster = []
        for order in plant.orders:
            crew = order.shift_id.rsplit("-", 1)[1]
            floater = [plant.floaters[order.line]] if order.line in plant.floaters else []
            for person in plant.crews[(order.line, crew)] + floater:
                roster.append(
                    {
                        "shift_id": order.shift_id,
                        "line_id": f"L{order.line}",
                        "crew": crew,
                        "start": _iso(order.planned_start),
                        "end": _iso(order.planned_end),
                        "person_id": person,
                        "name": plant.people[person]["name"],
                        "role": plant.people[person]["role"],
                    }
                )
        _csv(self.out / "worker" / "shift_roster.csv", roster)
        skills = [
            {
                "person_id": pid,
                "name": p["name"],
                "skill_id": skill,
                "skill_name": _skill_name(skill),
                "requires_certification": "yes",
                "level": level,
                "certified": certified,
                "valid_until": _iso(until),
            }
            for pid, p in plant.people.items()
            for skill, (level, certified, until) in p["skills"].items()
        ]
        if "no-certifications" not in plant.variants:
            _csv(self.out / "worker" / "skills_matrix.csv", skills)
        for n, audit in enumerate(plant.audits):
            self._audit(n, audit)
        self._notes_and_decisions()

    def _audit(self, n: int, audit: dict[str, Any]) -> None:
        plant = self.plant
        audit_id = f"audit_{plant.seed:04d}{n:08d}"
        started = audit["day"]
        person = plant.people[audit["person"]]
        kind = plant.machines[audit["machine"]][1]
        pm = audit["template"] == "pm"
        items = (
            [
                ("q-bearings", "Spindle bearings greased?", False, ""),
                ("q-clamp", "Tool clamp force within limits?", False, ""),
                ("q-coolant-conc", "Coolant concentration checked?", False, ""),
            ]
            if pm
            else [
                ("q-coolant", "Coolant level within marks?", False, ""),
                (
                    "q-spindle",
                    "Spindle runs without noise or vibration?",
                    audit["failing"],
                    "rough sound and vibration at high rpm" if audit["failing"] else "",
                ),
                ("q-guards", "Guards and interlocks working?", False, ""),
            ]
        )
        doc = {
            "template_id": "template_preventive_maintenance"
            if pm
            else "template_cnc_start_of_shift",
            "audit_id": audit_id,
            "archived": False,
            "created_at": _iso(started),
            "modified_at": _iso(started + timedelta(minutes=8)),
            "audit_data": {
                "score": 3 - audit["failing"],
                "total_score": 3,
                "score_percentage": round(100 * (3 - audit["failing"]) / 3, 3),
                "name": f"{'Preventive maintenance' if pm else 'Start-of-shift check'} "
                f"{_asset(audit['machine'], kind)}",
                "authorship": {
                    "owner": person["name"],
                    "owner_id": person["user"],
                    "author": person["name"],
                    "author_id": person["user"],
                },
                "date_started": _iso(started),
                "date_completed": _iso(started + timedelta(minutes=8)),
            },
            "template_data": {
                "metadata": {
                    "name": "Preventive maintenance checklist"
                    if pm
                    else "CNC start-of-shift checklist"
                }
            },
            "header_items": [
                {"item_id": "h-site", "label": "Site", "type": "section"},
                {
                    "parent_id": "h-site",
                    "item_id": "h-machine",
                    "label": "Machine",
                    "type": "textsingle",
                    "responses": {"text": _asset(audit["machine"], kind)},
                },
            ],
            "items": [{"item_id": "s1", "label": "Spindle and tooling", "type": "section"}]
            + [
                {
                    "parent_id": "s1",
                    "item_id": item,
                    "label": label,
                    "type": "question",
                    "responses": {
                        "selected": [{"label": "No" if failed else "Yes"}],
                        "failed": failed,
                        **({"text": text} if text else {}),
                    },
                }
                for item, label, failed, text in items
            ],
        }
        (self.out / "worker" / "audits" / f"{audit_id}.json").write_text(json.dumps(doc))

    def _notes_and_decisions(self) -> None:
        """Operator notes and decision logs about the deviations the plant will show."""
        plant = self.plant
        rng = random.Random(plant.seed + 2)
        notes, decisions = [], []
        by_cause = plant.deviations_by_cause()
        for cause, entry in sorted(by_cause.items()):
            kind, key = cause.split(":", 1)
            for index, deviation in enumerate(entry["deviations"]):
                if not deviation.startswith("DEV-SCRAP-") or rng.random() > 0.5:
                    continue
                operation = deviation.removeprefix("DEV-SCRAP-")
                op = next(
                    o
                    for order in plant.orders
                    if order.order_id == operation.split("/")[0]
                    for o in order.operations
                    if o.operation_id == operation
                )
                note_text, summary, rationale, outcome = _narrative(kind, key, op, rng, index)
                notes.append(
                    {
                        "note_id": f"NOTE-{len(notes) + 90000}",
                        "written_at": _iso(op.end + timedelta(minutes=10)),
                        "author_id": op.person,
                        "note_kind": "operator_note",
                        "text": note_text,
                        "machine_id": op.machine,
                        "order_id": op.order,
                        "lot_id": "",
                        "deviation_id": deviation,
                    }
                )
                decisions.append(
                    {
                        "decision_id": f"DEC-{len(decisions) + 5000}",
                        "decided_at": _iso(op.end + timedelta(hours=2)),
                        "decided_by": plant.engineer,
                        "decision_type": _decision_type(kind),
                        "summary": summary,
                        "rationale": rationale,
                        "deviation_id": deviation,
                        "order_id": op.order,
                        "machine_id": op.machine,
                        "lot_id": op.lot or "",
                        "outcome": outcome[0],
                        "outcome_description": outcome[1],
                        "outcome_recorded_at": _iso(op.end + timedelta(days=2)),
                    }
                )
        _csv(self.out / "worker" / "operator_notes.csv", notes)
        _csv(self.out / "worker" / "decision_log.csv", decisions)

    # -- ground truth and aliases ----------------------------------------------------------------

    def _ground_truth(self) -> dict[str, Any]:
        plant = self.plant
        causes = []
        for cause, entry in sorted(plant.deviations_by_cause().items()):
            causes.append(
                {
                    "cause_id": cause,
                    "kind": cause.split(":")[0],
                    **plant.cause_entities(cause),
                    "deviations": sorted(set(entry["deviations"])),
                }
            )
        return {
            "seed": plant.seed,
            "scale": plant.scale,
            "weeks": plant.weeks,
            "variants": sorted(plant.variants),
            "orders": len(plant.orders),
            "causes": causes,
            "unexplained": plant.unexplained(),
            "note": "Deviation IDs are those the default deviation rules produce.",
        }

    def _aliases(self) -> str:
        lines = [
            "# Asset tags used in SafetyCulture -> SAP equipment IDs",
            "[Machine.safetyculture]",
        ]
        lines += [f'"{_asset(m, kind)}" = "{m}"' for m, (_, kind, _) in self.plant.machines.items()]
        lines += ["", "# SafetyCulture user IDs -> SAP personnel numbers", "[Person.safetyculture]"]
        lines += [f'"{p["user"]}" = "{pid}"' for pid, p in self.plant.people.items()]
        return "\n".join(lines) + "\n"


# -- helpers ---------------------------------------------------------------------------------------


def _asset(machine: str, kind: str) -> str:
    return f"{kind.upper()}-{machine.removeprefix('M-')}"


def _op_text(kind: str) -> str:
    return {"mill": "Milling", "lathe": "Turning", "grinder": "Grinding"}[kind]


def _skill_name(skill: str) -> str:
    return {"CNC-MILL": "CNC milling", "CNC-TURN": "CNC turning", "GRIND": "Cylindrical grinding"}[
        skill
    ]


def _decision_type(kind: str) -> str:
    return {
        "supplier_lot": "hold",
        "worn_tool": "maintenance",
        "uncertified_operator": "training",
        "changeover_drift": "parameter_change",
        "machine_degradation": "maintenance",
        "new_operator": "training",
    }[kind]


def _narrative(kind: str, key: str, op: Operation, rng: random.Random, index: int) -> tuple:
    """A note, a decision and its outcome in the words people use on the shop floor."""
    if kind == "supplier_lot":
        batch = key.split("/")[1]
        return (
            rng.choice(
                [
                    f"Bars from batch {batch} cut badly, bores come out oversize.",
                    f"Material of batch {batch} feels harder than usual, tool marks on the bore.",
                    "Raw bar seems off spec, lots of rejects at the bore check.",
                ]
            ),
            f"Quarantine remaining bars of batch {batch} and return them to the supplier",
            "Rejects only on orders that used this batch; other batches run clean",
            ("effective", "No more oversize bores after switching to another batch"),
        )
    if kind == "worn_tool":
        return (
            rng.choice(
                [
                    "Spindle sounds rough and vibrates at high rpm, chatter on the bore.",
                    "Chatter marks on the surface, machine shakes during finishing.",
                    "Vibration alarm again on the spindle, surface finish poor.",
                ]
            ),
            f"Replace the spindle bearing on {op.machine}; move open orders to the other mill",
            "Preventive maintenance was skipped; vibration faults and scrap since then",
            (
                "effective" if index % 3 else "partially_effective",
                "Scrap back to normal after the bearing was replaced",
            ),
        )
    if kind == "machine_degradation":
        return (
            rng.choice(
                [
                    "Axis load warnings all shift, diameters wander.",
                    "Machine runs warm and the finish gets worse every day.",
                ]
            ),
            f"Inspect the axis drive and guideways on {op.machine}",
            "Failures rising on this machine for days, other machines run clean",
            ("effective", "Back to normal after the drive was serviced"),
        )
    if kind == "new_operator":
        return (
            rng.choice(
                [
                    "First weeks on the mill, still learning the clamping.",
                    "Not sure about the probing cycle on this mill, several rejects.",
                ]
            ),
            f"Pair operator {op.person} with an experienced setter on mills",
            "Rejects on mill jobs of an operator new to milling",
            ("effective", "Rejects dropped after two weeks of pairing"),
        )
    if kind in ("uncertified_operator", "new_operator"):
        return (
            rng.choice(
                [
                    "New setup did not hold tolerance, had to re-measure several parts.",
                    "Offsets were set wrong at the start, first parts scrapped.",
                    "Unsure about the 5-axis setup sequence, several rejects.",
                ]
            ),
            f"Pair operator {op.person} with a certified setter; book milling recertification",
            "Scrap concentrated on mill jobs run by an operator whose certification expired",
            ("effective", "Recertified; rejects on this operator's jobs dropped to normal"),
        )
    return (
        rng.choice(
            [
                "After the changeover the spindle ran hot, diameters drifted.",
                "Diameter creeping up after product change, coolant temperature high.",
                "Parts out of tolerance right after switching products, machine warm.",
            ]
        ),
        f"Add a warm-up cycle and re-zero offsets after every changeover on {op.machine}",
        "Diameter failures only on the first order after a changeover, spindle running hot",
        ("partially_effective", "Fewer failures; temperature still rises on long changeovers"),
    )


def _header(number: int, posted: datetime, items: list[dict]) -> dict[str, Any]:
    return {
        "__metadata": {"type": "API_MATERIAL_DOCUMENT_SRV.A_MaterialDocumentHeaderType"},
        "MaterialDocumentYear": f"{posted.year}",
        "MaterialDocument": str(number),
        "DocumentDate": _ms(posted),
        "PostingDate": _ms(posted),
        "to_MaterialDocumentItem": {"results": items},
    }


def _item(
    number: int,
    index: int,
    material: str,
    batch: str,
    movement: str,
    quantity: float,
    unit: str,
    supplier: str = "",
    order: str = "",
) -> dict[str, Any]:
    return {
        "MaterialDocumentYear": "2026",
        "MaterialDocument": str(number),
        "MaterialDocumentItem": str(index),
        "Material": material,
        "Plant": "1010",
        "StorageLocation": "0001",
        "Batch": batch,
        "GoodsMovementType": movement,
        "Supplier": supplier,
        "ManufacturingOrder": order,
        "QuantityInEntryUnit": f"{quantity:.3f}",
        "EntryUnit": unit,
    }


def _write_xml(root: ET.Element, namespace: str, path: Path) -> None:
    """Write with the namespace as the default one, as agents and MES exports do."""
    ET.register_namespace("", namespace)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def generate(
    out: Path, seed: int = 7, scale: float = 1.0, weeks: int = 6, variants: Iterable[str] = ()
) -> dict[str, Any]:
    """Simulate a plant and write it to ``out``; returns the ground truth."""
    return DemoWriter(DemoPlant(seed, scale, weeks, variants), out).write()
