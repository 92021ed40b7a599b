"""All Cypher that opsgraph runs, as named queries in one place.

Values always travel as parameters. Labels, relationship types and property names cannot be
parameters in Cypher, so they come only from the schema classes and are checked and quoted
here before they touch a query string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache, lru_cache

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """Quote a schema identifier after checking it is a plain name (defence in depth)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"refusing to place {name!r} in a query: not a plain identifier")
    return f"`{name}`"


_PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def together(reads: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Several reads (``(query, its columns)``) as one statement, so they cost one round
    trip: each runs in a subquery of its own (``CALL () {…}``, Neo4j 5.23+ and ArcadeDB),
    its rows collected in order as maps and returned under its number (``part``), its
    parameters renamed ``r<i>_<name>``. Only for our own generated reads, whose columns are
    plain names. The last 1,024 combinations are remembered: the API combines per request."""
    return _together(tuple((query, tuple(columns)) for query, columns in reads))


@lru_cache(maxsize=1024)
def _together(reads: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    parts = []
    for i, (query, columns) in enumerate(reads):
        body = _PARAMETER.sub(lambda found, i=i: f"$r{i}_{found.group(1)}", query)
        row = ", ".join(f"{ident(column)}: {ident(column)}" for column in columns)
        parts.append(
            f"CALL () {{\n{body}\n}}\nWITH collect({{{row}}}) AS rows\nRETURN {i} AS part, rows"
        )
    return "\nUNION ALL\n".join(parts)


# Writes are split by what the store already holds: the writer reads the batch's existing
# nodes, creates the new ones, updates only those whose values differ and leaves the rest
# untouched, so re-running the same input changes nothing (provenance stamps included) and
# costs only reads. A concurrent writer creating the same key makes CREATE fail on the
# uniqueness constraint; the writer then retries the batch, which re-reads and updates.


def _times(names: Sequence[str]) -> str:
    """SET items for timestamp properties sent as ISO text in ``row.times``.

    The store builds datetimes from text several times faster than the driver encodes
    Python datetimes; a row without a value keeps what is stored.
    """
    return "".join(
        f", x.{ident(n)} = CASE WHEN row.times.{ident(n)} IS NULL THEN x.{ident(n)} "
        f"ELSE datetime(row.times.{ident(n)}) END"
        for n in names
    )


_STAMPS = "x.updated_at = datetime($now), x.ingest_run = $run"


def existing_nodes(label: str, key: str) -> str:
    """For those ``$keys`` that exist, the stored values of the properties in ``$names``.

    Only the compared values travel back (not whole property maps with their provenance
    timestamps): decoding results is the largest cost of a re-run.
    """
    return (
        "UNWIND $keys AS key\n"
        f"MATCH (x:{ident(label)} {{{ident(key)}: key}})\n"
        f"RETURN key, {_STORED} AS stored"
    )


# The stored values of the properties in ``$names``, those in ``$times`` as ISO text: the
# driver hydrates temporal values in pure Python, Python parses ISO text in C.
_STORED = "[name IN $names | CASE WHEN name IN $times THEN toString(x[name]) ELSE x[name] END]"


def _created(names: Sequence[str], times: Sequence[str]) -> str:
    """The property map a new node or relationship is created with, provenance stamps
    included: one map literal lets the store write the record once, where SET items after
    CREATE rewrote it per item (1.5-1.7x slower on the embedded store). A property a row
    lacks is null, which CREATE leaves unset."""
    items = [f"{ident(n)}: row.props.{ident(n)}" for n in names]
    items += [f"{ident(n)}: datetime(row.times.{ident(n)})" for n in times]
    items += ["ingested_at: datetime($now)", "updated_at: datetime($now)", "ingest_run: $run"]
    return ", ".join(items)


def create_nodes(label: str, key: str, names: Sequence[str] = (), times: Sequence[str] = ()) -> str:
    """Create a batch of ``$rows`` ({key, props, times}) known not to exist yet."""
    return (
        "UNWIND $rows AS row\n"
        f"CREATE (x:{ident(label)} {{{ident(key)}: row.key, {_created(names, times)}}})"
    )


def update_nodes(label: str, key: str, times: Sequence[str] = ()) -> str:
    """Set new values on existing nodes and stamp the run that changed them. A node that
    gets facts of its own is no longer ``unresolved`` (only references had named it)."""
    return (
        "UNWIND $rows AS row\n"
        f"MATCH (x:{ident(label)} {{{ident(key)}: row.key}})\n"
        f"SET x += row.props{_times(times)}, {_STAMPS}, x.unresolved = null"
    )


def relationship_state(
    start_label: str, start_key: str, rel_type: str, end_label: str, end_key: str
) -> str:
    """For each of ``$rows`` ({position, start, end}): missing endpoints, and whether the
    relationship exists with the stored values of the properties in ``$names``."""
    return (
        "UNWIND $rows AS row\n"
        f"OPTIONAL MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"OPTIONAL MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        f"OPTIONAL MATCH (b)<-[x:{ident(rel_type)}]-(a)\n"
        "RETURN row.position AS position, a IS NULL AS start_missing, b IS NULL AS end_missing, "
        f"x IS NOT NULL AS exists, {_STORED} AS stored"
    )


# Relationship patterns are written end-first: the start of our relationships is the hub (a
# machine with millions of readings, a supplier with every lot), the end an event or a part,
# and a store that expands from the side written first should not walk the hub's edges.


def create_relationships(
    start_label: str,
    start_key: str,
    rel_type: str,
    end_label: str,
    end_key: str,
    names: Sequence[str] = (),
    times: Sequence[str] = (),
) -> str:
    """CREATE relationships known to be new (an endpoint was created in this run's batch);
    returns how many were created so the caller can tell a missing endpoint."""
    return (
        "UNWIND $rows AS row\n"
        f"MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        f"CREATE (b)<-[x:{ident(rel_type)} {{{_created(names, times)}}}]-(a)\n"
        "RETURN count(x) AS created"
    )


def merge_relationships(
    start_label: str,
    start_key: str,
    rel_type: str,
    end_label: str,
    end_key: str,
    times: Sequence[str] = (),
) -> str:
    """MERGE one relationship of a type per (start, end) pair and set its new values.

    MERGE rather than CREATE: relationships have no uniqueness constraint to stop two
    concurrent writers from creating the same one twice.
    """
    return (
        "UNWIND $rows AS row\n"
        f"MATCH (a:{ident(start_label)} {{{ident(start_key)}: row.start}})\n"
        f"MATCH (b:{ident(end_label)} {{{ident(end_key)}: row.end}})\n"
        f"MERGE (b)<-[x:{ident(rel_type)}]-(a)\n"
        "ON CREATE SET x.ingested_at = datetime($now), x += row.origin\n"
        f"SET x += row.props{_times(times)}, {_STAMPS}"
    )


def missing_keys(label: str, key: str) -> str:
    """Those of ``$keys`` that name no node of the label."""
    return (
        "UNWIND $keys AS key\n"
        f"OPTIONAL MATCH (x:{ident(label)} {{{ident(key)}: key}})\n"
        "WITH key, x WHERE x IS NULL\n"
        "RETURN key"
    )


def unique_constraint(label: str, key: str) -> str:
    return (
        f"CREATE CONSTRAINT {ident(f'opsgraph_{label}_{key}_unique')} IF NOT EXISTS "
        f"FOR (n:{ident(label)}) REQUIRE n.{ident(key)} IS UNIQUE"
    )


def node_index(label: str, prop: str) -> str:
    return (
        f"CREATE INDEX {ident(f'opsgraph_{label}_{prop}')} IF NOT EXISTS "
        f"FOR (n:{ident(label)}) ON (n.{ident(prop)})"
    )


COUNT_NODES_BY_LABEL = "MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS count"
COUNT_UNRESOLVED_BY_LABEL = """
MATCH (n) WHERE n.unresolved = true
UNWIND labels(n) AS label
RETURN label, count(*) AS count
"""
COUNT_RELATIONSHIPS_BY_TYPE = "MATCH ()-[r]->() RETURN type(r) AS type, count(*) AS count"
PING = "RETURN 1 AS ok"


# -- deviation rules (read side; the rules themselves live in ingest/deviations.py) ----------

# Deviation rules. Each runs either over the whole graph (a bulk load) or only from the keys a
# live batch wrote (``scoped``), so a webhook or MQTT message costs what it touched, not the
# graph's size. Only the anchoring clause differs; the rest of each query is shared.


def _anchor(scoped: bool, whole: str, keyed: str) -> str:
    return f"UNWIND $keys AS key MATCH {keyed}" if scoped else f"MATCH {whole}"


def scrap_by_operation(scoped: bool = False) -> str:
    anchor = _anchor(
        scoped,
        "(o:Operation)<-[:CONFIRMS]-(c:Confirmation)",
        "(o:Operation {operation_id: key})<-[:CONFIRMS]-(c:Confirmation)",
    )
    return (
        anchor
        + """
WITH o, sum(coalesce(c.scrap_quantity, 0.0)) AS scrap, sum(coalesce(c.yield_quantity, 0.0)) AS good,
     min(c.start) AS start, max(c.end) AS end
WHERE scrap > 0
OPTIONAL MATCH (ord:ProductionOrder)-[:HAS_OPERATION]->(o)
OPTIONAL MATCH (o)-[:ON_MACHINE]->(m:Machine)
RETURN o.operation_id AS operation, ord.order_id AS order, m.machine_id AS machine,
       scrap, good, start, end
"""
    )


ORDERS_OF_OPERATIONS = """
UNWIND $keys AS key
MATCH (o:Operation {operation_id: key})<-[:HAS_OPERATION]-(ord:ProductionOrder)
RETURN DISTINCT ord.order_id AS order
"""


def order_completion(scoped: bool = False) -> str:
    anchor = _anchor(scoped, "(ord:ProductionOrder)", "(ord:ProductionOrder {order_id: key})")
    return (
        anchor
        + """
OPTIONAL MATCH (ord)-[:HAS_OPERATION]->(o:Operation)
WITH ord, max(o.actual_end) AS finished, min(o.actual_start) AS started
RETURN ord.order_id AS order, ord.status AS status, ord.planned_start AS planned_start,
       ord.planned_end AS planned_end, started, finished,
       ord.total_quantity AS total, ord.yield_quantity AS yield
"""
    )


def failed_quality_checks(scoped: bool = False) -> str:
    anchor = _anchor(scoped, "(q:QualityCheck)", "(q:QualityCheck {check_id: key})")
    return (
        anchor
        + """
WHERE q.result = 'fail'
   OR (q.value IS NOT NULL AND ((q.lower_limit IS NOT NULL AND q.value < q.lower_limit)
                             OR (q.upper_limit IS NOT NULL AND q.value > q.upper_limit)))
OPTIONAL MATCH (q)-[:CHECKED]->(o:Operation)
OPTIONAL MATCH (ord:ProductionOrder)-[:HAS_OPERATION]->(o)
OPTIONAL MATCH (o)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (q)-[:CHECKED_LOT]->(l:MaterialLot)
RETURN q.check_id AS check, q.characteristic AS characteristic, q.value AS value,
       q.lower_limit AS lower, q.upper_limit AS upper, q.unit AS unit, q.checked_at AS at,
       o.operation_id AS operation, ord.order_id AS order, m.machine_id AS machine,
       l.lot_id AS lot
"""
    )


def long_downtimes(scoped: bool = False) -> str:
    anchor = _anchor(
        scoped,
        "(m:Machine)-[:HAD_STATE]->(s:MachineState)",
        "(s:MachineState {state_id: key})<-[:HAD_STATE]-(m:Machine)",
    )
    return (
        anchor
        + """
WHERE s.state = 'down' AND s.duration_s >= $seconds
RETURN m.machine_id AS machine, s.state_id AS state, s.start AS start, s.end AS end,
       s.duration_s AS seconds, s.reason_code AS reason
"""
    )


def failed_inspection_items(scoped: bool = False) -> str:
    anchor = _anchor(
        scoped,
        "(i:Inspection)-[:HAS_ITEM]->(item:InspectionItem)",
        "(item:InspectionItem {item_id: key})<-[:HAS_ITEM]-(i:Inspection)",
    )
    return (
        anchor
        + """
WHERE item.failed = true
OPTIONAL MATCH (i)-[:INSPECTED]->(m:Machine)
RETURN item.item_id AS item, item.label AS label, item.response AS response,
       i.inspection_id AS inspection, coalesce(i.completed_at, i.started_at) AS at,
       m.machine_id AS machine
"""
    )


DEVIATIONS_WITH_REPEATED_TAG = """
MATCH (d:Deviation) WHERE any(p IN $prefixes WHERE d.deviation_id STARTS WITH p)
RETURN d.deviation_id AS id
"""

DEVIATIONS_BY_TYPE = """
MATCH (d:Deviation)
RETURN d.deviation_type AS type, d.severity AS severity, count(*) AS count
"""

WORST_DEVIATIONS = """
MATCH (d:Deviation)
WHERE d.severity IN $severities
OPTIONAL MATCH (d)-[:ABOUT]->(m:Machine)
RETURN d.deviation_id AS deviation, d.deviation_type AS type, d.severity AS severity,
       d.description AS description, d.start AS start, m.machine_id AS machine
ORDER BY d.start DESC
LIMIT $limit
"""


# -- root-cause analysis (graph/rca.py) -----------------------------------------------------

RCA_DEVIATION = """
MATCH (d:Deviation {deviation_id: $id})
OPTIONAL MATCH (d)-[:ABOUT]->(o:Operation)
OPTIONAL MATCH (d)-[:ABOUT]->(ord:ProductionOrder)
OPTIONAL MATCH (d)-[:ABOUT]->(m:Machine)
OPTIONAL MATCH (d)-[:ABOUT]->(l:MaterialLot)
RETURN d.deviation_id AS id, d.deviation_type AS type, d.severity AS severity,
       d.description AS description, d.start AS start, d.end AS end,
       collect(DISTINCT o.operation_id) AS operations, collect(DISTINCT ord.order_id) AS orders,
       collect(DISTINCT m.machine_id) AS machines, collect(DISTINCT l.lot_id) AS lots
"""

RCA_ORDER_OPERATIONS = """
UNWIND $orders AS oid
MATCH (:ProductionOrder {order_id: oid})-[:HAS_OPERATION]->(o:Operation)
RETURN o.operation_id AS operation
"""

RCA_OPERATIONS = """
UNWIND $ops AS oid
MATCH (o:Operation {operation_id: oid})
OPTIONAL MATCH (o)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (ord:ProductionOrder)-[:HAS_OPERATION]->(o)
RETURN o.operation_id AS operation, o.actual_start AS start, o.actual_end AS end,
       m.machine_id AS machine, ord.order_id AS order
"""

# Times a query compares with are computed once, in a leading WITH: the embedded store
# evaluates `datetime($since)` in a WHERE once per row, which doubles the cost of a scan.
#
# Every operation of the plant in the analysis window, with the deviations about it and its
# order: the reference the factors' deviation rates are compared with. Plant-wide on purpose:
# a comparison built from optional metadata (machine types) collapses on exports without it.
# Thousands of rows: collected into one record of lists (the driver pays per record), with
# times as epoch milliseconds (decoding a datetime costs more than reading it).
RCA_WINDOW = """
WITH datetime($since) AS since, datetime($until) AS until
MATCH (o:Operation)
WHERE o.actual_start >= since AND o.actual_start <= until
OPTIONAL MATCH (o)-[:ON_MACHINE]->(m:Machine)
RETURN collect([o.operation_id, o.actual_start.epochMillis, o.actual_end.epochMillis,
                coalesce(o.description, o.sequence), m.machine_id]) AS rows
"""

# The deviations of the window's work: about an operation, and (read only for a deviation
# about an order) about its order.
RCA_WINDOW_DEVIATIONS = """
WITH datetime($since) AS since, datetime($until) AS until
MATCH (d:Deviation)
WHERE d.start >= since AND d.start <= until
MATCH (d)-[:ABOUT]->(o:Operation)
RETURN collect([o.operation_id, d.deviation_type]) AS rows
"""

RCA_WINDOW_ORDER_DEVIATIONS = """
WITH datetime($since) AS since, datetime($until) AS until
MATCH (d:Deviation)
WHERE d.start >= since AND d.start <= until
MATCH (d)-[:ABOUT]->(:ProductionOrder)-[:HAS_OPERATION]->(o:Operation)
RETURN collect([o.operation_id, d.deviation_type]) AS rows
"""

# Deviations about a machine alone (downtime, failed checklist items): an operation counts as
# showing one when it started on that machine within the same time.
RCA_MACHINE_DEVIATIONS = """
WITH datetime($since) AS since, datetime($until) AS until
MATCH (d:Deviation)
WHERE d.deviation_type IN $types
  AND d.start >= since AND d.start <= until
MATCH (d)-[:ABOUT]->(m:Machine)
RETURN d.deviation_id AS id, m.machine_id AS machine, d.start AS at
"""

RCA_OPERATION_AT = """
WITH datetime($at) - duration({hours: 12}) AS earliest,
     datetime($at) + duration({hours: 24}) AS latest
MATCH (:Machine {machine_id: $machine})<-[:ON_MACHINE]-(o:Operation)
WHERE o.actual_start >= earliest AND o.actual_start <= latest
RETURN o.operation_id AS operation, o.actual_start AS start, o.actual_end AS end
"""

# Which operations each candidate entity touched, for its deviation rate.
# Material travels with the work: a lot consumed by an operation is in the workpiece at the
# later operations of the same order too (a bar's hardness shows at grinding, not turning).
# Rows say which: ``carried`` for the later operations.
RCA_EXPOSURE_LOTS = """
UNWIND $keys AS key
MATCH (:MaterialLot {lot_id: key})-[:CONSUMED_BY]->(u:Operation)
OPTIONAL MATCH (u)<-[:HAS_OPERATION]-(:ProductionOrder)-[:HAS_OPERATION]->(o:Operation)
WHERE o.actual_start > u.actual_start
WITH key, collect(DISTINCT u.operation_id) AS direct, collect(DISTINCT o.operation_id) AS later
UNWIND [x IN direct | [x, false]] + [x IN later | [x, true]] AS row
RETURN key, row[0] AS operation, row[1] AS carried
"""

RCA_EXPOSURE_SUPPLIERS = """
WITH datetime($since) AS since, datetime($until) AS until
UNWIND $keys AS key
MATCH (:Supplier {supplier_id: key})-[:SUPPLIED]->(l:MaterialLot)-[:CONSUMED_BY]->(u:Operation)
WHERE u.actual_start >= since AND u.actual_start <= until
OPTIONAL MATCH (u)<-[:HAS_OPERATION]-(:ProductionOrder)-[:HAS_OPERATION]->(o:Operation)
WHERE o.actual_start > u.actual_start
WITH key, l, collect(DISTINCT u.operation_id) AS direct, collect(DISTINCT o.operation_id) AS later
UNWIND [x IN direct | [x, false]] + [x IN later | [x, true]] AS row
RETURN key, row[0] AS operation, row[1] AS carried, l.lot_id AS lot
"""

RCA_EXPOSURE_PEOPLE = """
WITH datetime($since) AS since, datetime($until) AS until
UNWIND $keys AS key
MATCH (:Person {person_id: key})-[:PERFORMED]->(o:Operation)
WHERE o.actual_start >= since AND o.actual_start <= until
RETURN key, o.operation_id AS operation
"""

# Work whose order ran an earlier step on the machine (any number of steps before).
RCA_EXPOSURE_UPSTREAM = """
WITH datetime($history) AS history, datetime($since) AS since, datetime($until) AS until
UNWIND $keys AS key
MATCH (:Machine {machine_id: key})<-[:ON_MACHINE]-(u:Operation)
WHERE u.actual_start >= history AND u.actual_start <= until
MATCH (u)<-[:HAS_OPERATION]-(:ProductionOrder)-[:HAS_OPERATION]->(o:Operation)
WHERE o.actual_start > u.actual_start
  AND o.actual_start >= since AND o.actual_start <= until
RETURN DISTINCT key, o.operation_id AS operation
"""

# The same kinds of symptom anywhere in the plant: how often work deviates when its machine
# raised such an alarm or failed such a checklist, pooled over machines.
RCA_ALARMS_LIKE = """
WITH datetime($since) AS since, datetime($until) AS until
MATCH (a:Alarm)
WHERE a.code IN $codes AND a.raised_at >= since AND a.raised_at <= until
  AND coalesce(a.level, '') <> 'Normal'
MATCH (m:Machine)-[:RAISED]->(a)
RETURN m.machine_id AS machine, a.code AS code, a.level AS level, a.raised_at AS at
"""

RCA_FAILED_INSPECTIONS_LIKE = """
WITH datetime($since) AS since, datetime($until) AS until
MATCH (i:Inspection)
WHERE i.template IN $templates AND i.failed_items > 0
  AND i.started_at >= since AND i.started_at <= until
MATCH (i)-[:INSPECTED]->(m:Machine)
RETURN m.machine_id AS machine, i.template AS template, i.started_at AS at
"""

RCA_INSPECTIONS = """
WITH datetime($since) AS since, datetime($until) AS until
UNWIND $machines AS mid
MATCH (:Machine {machine_id: mid})<-[:INSPECTED]-(i:Inspection)
WHERE i.started_at >= since AND i.started_at <= until
RETURN mid AS machine, i.inspection_id AS id, i.template AS template, i.title AS title,
       i.started_at AS at, coalesce(i.failed_items, 0) AS failed
"""

# Anchor first on the indexed business key, then expand: the embedded store plans patterns
# in the order they are written.
RCA_LOTS = """
UNWIND $ops AS oid
MATCH (o:Operation {operation_id: oid})
MATCH (o)<-[c:CONSUMED_BY]-(l:MaterialLot)
OPTIONAL MATCH (s:Supplier)-[:SUPPLIED]->(l)
RETURN oid AS operation, l.lot_id AS lot, s.supplier_id AS supplier, c.posted_at AS at
"""

RCA_PEOPLE = """
UNWIND $ops AS oid
MATCH (o:Operation {operation_id: oid})
MATCH (o)<-[:PERFORMED]-(p:Person)
OPTIONAL MATCH (p)-[h:HAS_SKILL]->(s:Skill)
RETURN oid AS operation, p.person_id AS person,
       collect({skill: s.skill_id, certified: h.certified, valid_until: h.valid_until}) AS skills
"""

# The work's history: the earlier operations of its order, where they ran and what they
# consumed (the workpiece carries both into this operation).
RCA_UPSTREAM = """
UNWIND $ops AS oid
MATCH (o:Operation {operation_id: oid})<-[:HAS_OPERATION]-(ord:ProductionOrder)
MATCH (ord)-[:HAS_OPERATION]->(u:Operation)
WHERE u.actual_start < o.actual_start
OPTIONAL MATCH (u)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (u)<-[c:CONSUMED_BY]-(l:MaterialLot)
OPTIONAL MATCH (s:Supplier)-[:SUPPLIED]->(l)
RETURN oid AS operation, ord.order_id AS order, u.operation_id AS upstream,
       m.machine_id AS machine, u.actual_end AS end, l.lot_id AS lot, s.supplier_id AS supplier,
       c.posted_at AS consumed
"""

RCA_OPERATION_DEVIATIONS = """
UNWIND $ops AS oid
MATCH (o:Operation {operation_id: oid})
OPTIONAL MATCH (d:Deviation)-[:ABOUT]->(o)
OPTIONAL MATCH (ord:ProductionOrder)-[:HAS_OPERATION]->(o)
OPTIONAL MATCH (e:Deviation)-[:ABOUT]->(ord)
RETURN oid AS operation, collect(DISTINCT d.deviation_type) AS own,
       collect(DISTINCT e.deviation_type) AS orders
"""

RCA_MAINTENANCE = """
WITH datetime($since) AS since, datetime($until) AS until
UNWIND $machines AS mid
MATCH (:Machine {machine_id: mid})-[:HAD_MAINTENANCE]->(e:MaintenanceEvent)
WHERE coalesce(e.start, e.scheduled_at) >= since
  AND coalesce(e.start, e.scheduled_at) <= until
RETURN mid AS machine, e.maintenance_id AS id, e.maintenance_type AS type,
       e.status AS status, coalesce(e.start, e.scheduled_at) AS at, e.description AS description
"""

RCA_CHANGEOVERS = """
WITH datetime($since) AS since, datetime($until) AS until
UNWIND $machines AS mid
MATCH (:Machine {machine_id: mid})-[:HAD_CHANGEOVER]->(c:Changeover)
WHERE c.start >= since AND c.start <= until
RETURN mid AS machine, c.changeover_id AS id, c.start AS at, c.end AS end,
       c.to_product AS product
"""

RCA_ALARMS = """
WITH datetime($since) AS since, datetime($until) AS until
UNWIND $machines AS mid
MATCH (:Machine {machine_id: mid})-[:RAISED]->(a:Alarm)
WHERE a.raised_at >= since AND a.raised_at <= until
  AND coalesce(a.level, '') <> 'Normal'
RETURN mid AS machine, a.alarm_id AS id, a.code AS code, a.level AS level,
       a.raised_at AS at, a.message AS message
"""

RCA_FORGET = """
MATCH (:Deviation {deviation_id: $id})-[r:CAUSED_BY|CONTRIBUTED_TO]->()
DELETE r
"""


def rca_remember(rel_type: str, label: str, key: str) -> str:
    """Write one inferred cause edge from a deviation to a node of the model."""
    return (
        "MATCH (d:Deviation {deviation_id: $id})\n"
        f"MATCH (c:{ident(label)} {{{ident(key)}: $key}})\n"
        f"CREATE (d)-[r:{ident(rel_type)}]->(c)\n"
        "SET r += $props, r.computed_at = datetime($now)"
    )


def stored_causes(causes: dict[str, tuple[str, Sequence[str], Sequence[str]]]) -> str:
    """Each of ``$keys`` deviations' stored causes (the edges ``rca_remember`` wrote) with
    the cause's label, business key and properties, projected per label (``causes``: label
    -> key, fields, timestamps), so a client asking for the cause nodes costs no second
    round trip per label."""
    keys = " ".join(
        f"WHEN x:{ident(label)} THEN x.{ident(key)}" for label, (key, _, _) in causes.items()
    )
    props = " ".join(
        f"WHEN x:{ident(label)} THEN {projection('x', fields, times)}"
        for label, (_, fields, times) in causes.items()
    )
    return f"""
UNWIND $keys AS key
MATCH (:Deviation {{deviation_id: key}})-[r:CAUSED_BY|CONTRIBUTED_TO]->(x)
RETURN key, type(r) AS relationship, head(labels(x)) AS label,
       CASE {keys} END AS target, CASE {props} END AS props,
       r.rank AS rank, r.score AS score, r.method AS method, r.run_id AS run_id,
       r.cause_type AS cause_type, r.explanation AS explanation,
       r.evidence AS evidence, toString(r.computed_at) AS computed_at
ORDER BY key, rank
"""


RCA_DEVIATIONS_SINCE = """
MATCH (d:Deviation)
WHERE d.start >= datetime($since) AND d.deviation_type IN $types
RETURN d.deviation_id AS id ORDER BY d.start
"""

RCA_DEVIATION_TYPES = """
MATCH (d:Deviation) WHERE d.deviation_type IS NOT NULL
RETURN DISTINCT d.deviation_type AS type
"""

RCA_LINES = """
MATCH (l:Line)
RETURN l.line_id AS id
ORDER BY id
"""

RCA_COMMON_SELECTION = """
MATCH (d:Deviation)
WHERE ($type IS NULL OR d.deviation_type = $type)
  AND ($since IS NULL OR d.start >= datetime($since))
  AND ($until IS NULL OR d.start <= datetime($until))
OPTIONAL MATCH (d)-[:ABOUT]->(o:Operation)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (line:Line)-[:HAS_MACHINE]->(m)
WITH d, collect(DISTINCT line.line_id) AS lines
WHERE $line IS NULL OR $line IN lines
RETURN d.deviation_id AS id
"""


# -- decision memory (graph/memory.py) ------------------------------------------------------

MEMORY_DECISION_TEXTS = """
MATCH (d:Decision)
OPTIONAL MATCH (p:Person)-[:DECIDED]->(d)
OPTIONAL MATCH (d)-[:HAS_OUTCOME]->(o:Outcome)
RETURN d.decision_id AS decision, d.summary AS summary, d.rationale AS rationale,
       d.decided_at AS at, p.person_id AS author, o.result AS outcome,
       o.description AS outcome_description
"""

MEMORY_ACTION_TEXTS = """
MATCH (a:Action)
WHERE a.title IS NOT NULL
RETURN a.action_id AS action, a.title AS title, a.description AS description,
       a.created_at AS at
"""

MEMORY_TO_EMBED = """
MATCH (n:Note)
WHERE n.text IS NOT NULL AND ($rebuild OR n.text_hash IS NULL OR n.embedding IS NULL)
RETURN n.note_id AS note, n.text AS text, n.text_hash AS hash
"""

MEMORY_STORE_EMBEDDINGS = """
UNWIND $rows AS row
MATCH (n:Note {note_id: row.note})
SET n.embedding = row.embedding, n.text_hash = row.hash, n.embedded_at = datetime($now)
"""

MEMORY_EMBEDDINGS_SINCE = """
MATCH (n:Note)
WHERE n.embedding IS NOT NULL AND n.embedded_at > datetime($since)
RETURN n.note_id AS note, n.embedding AS embedding, n.embedded_at AS at
"""

MEMORY_NOTES = """
UNWIND $notes AS nid
MATCH (n:Note {note_id: nid})
OPTIONAL MATCH (author:Person)-[:WROTE]->(n)
RETURN n.note_id AS note, n.text AS text, n.note_kind AS kind, n.written_at AS at,
       author.person_id AS author
"""

MEMORY_NOTE_CONTEXT = """
UNWIND $notes AS nid
MATCH (:Note {note_id: nid})-[:ABOUT|ON_MACHINE*1..3]->(u)
RETURN DISTINCT nid AS note, labels(u)[0] AS label, properties(u) AS props
"""

MEMORY_MACHINE_LINES = """
UNWIND $machines AS mid
MATCH (:Machine {machine_id: mid})<-[:HAS_MACHINE]-(l:Line)
RETURN mid AS machine, l.line_id AS line
"""

MEMORY_ORDER_PRODUCTS = """
UNWIND $orders AS oid
MATCH (:ProductionOrder {order_id: oid})-[:PRODUCES]->(p:Product)
RETURN oid AS order, p.product_id AS product
"""

MEMORY_OPERATION_LOTS = """
UNWIND $ops AS oid
MATCH (:Operation {operation_id: oid})<-[:CONSUMED_BY]-(l:MaterialLot)
RETURN oid AS operation, l.lot_id AS lot
"""

MEMORY_DECISIONS = """
UNWIND $deviations AS did
MATCH (dev:Deviation {deviation_id: did})<-[:ABOUT]-(d:Decision)
OPTIONAL MATCH (d)-[:HAS_OUTCOME]->(o:Outcome)
RETURN did AS deviation, dev.deviation_type AS deviation_type, d.decision_id AS decision,
       d.summary AS summary, d.decision_type AS decision_type, d.decided_at AS decided_at,
       o.result AS outcome, o.description AS outcome_description
"""

MEMORY_DEVIATION = """
MATCH (d:Deviation {deviation_id: $id})
OPTIONAL MATCH (d)-[:ABOUT|ON_MACHINE*1..2]->(u)
RETURN d.description AS description, d.deviation_type AS type,
       collect(DISTINCT [labels(u)[0], properties(u)]) AS context
"""

VECTOR_INDEX_PROBE = "SHOW VECTOR INDEXES YIELD name RETURN count(*) AS n"

VECTOR_INDEX_CREATE = (
    "CREATE VECTOR INDEX opsgraph_note_embedding IF NOT EXISTS FOR (n:Note) ON (n.embedding) "
    "OPTIONS {indexConfig: {`vector.dimensions`: $dimensions, "
    "`vector.similarity_function`: 'cosine'}}"
)

VECTOR_INDEX_QUERY = """
CALL db.index.vector.queryNodes('opsgraph_note_embedding', $k, $vector)
YIELD node, score
RETURN node.note_id AS note, score
"""


# -- reading the graph for the API (graph/read.py) ------------------------------------------


def projection(var: str, fields: Sequence[str], times: Sequence[str]) -> str:
    """A node's properties as a map, timestamps as ISO text: the driver hydrates temporal
    values in pure Python, which cost more than the whole query on pages of events, while
    Python parses ISO text in C. Listing the fields also leaves out hidden ones (embeddings).
    Remembered: the API builds its reads' texts per request."""
    return _projection(var, tuple(fields), tuple(times))


@cache
def _projection(var: str, fields: tuple[str, ...], times: tuple[str, ...]) -> str:
    parts = [
        f"{ident(name)}: toString({var}.{ident(name)})" if name in times else f".{ident(name)}"
        for name in fields
    ]
    return f"{var} {{{', '.join(parts)}}}"


def nodes_by_key(label: str, key: str, fields: Sequence[str], times: Sequence[str]) -> str:
    return (
        "UNWIND $keys AS k\n"
        f"MATCH (x:{ident(label)} {{{ident(key)}: k}})\n"
        f"RETURN k AS key, {projection('x', fields, times)} AS props"
    )


def neighbours(
    start_label: str,
    start_key: str,
    rel_type: str,
    end_label: str,
    end_key: str,
    outgoing: bool,
    fields: Sequence[str],
    times: Sequence[str],
    links: tuple[Sequence[str], Sequence[str]] | None = None,
) -> str:
    """For each of ``$keys`` on one side, the nodes at the other end of the relationship;
    with ``links`` (the relationship's fields and timestamps), its properties too."""
    rel = f"r:{ident(rel_type)}" if links else f":{ident(rel_type)}"
    if outgoing:
        anchor, pattern = (
            f"(a:{ident(start_label)} {{{ident(start_key)}: k}})",
            f"(a)-[{rel}]->(x:{ident(end_label)})",
        )
    else:
        anchor, pattern = (
            f"(b:{ident(end_label)} {{{ident(end_key)}: k}})",
            f"(b)<-[{rel}]-(x:{ident(start_label)})",
        )
    also = f", {projection('r', *links)} AS link" if links else ""
    return (
        f"UNWIND $keys AS k\nMATCH {anchor}\nMATCH {pattern}\n"
        f"RETURN k AS key, {projection('x', fields, times)} AS props{also}"
    )


def page(
    label: str,
    key: str,
    equals: Sequence[str],
    time_property: str | None,
    fields: Sequence[str],
    times: Sequence[str],
) -> str:
    """One page of a label ordered by business key, after a cursor, with equality filters
    (``$f_<name>``) and an optional time range on ``time_property``."""
    where = ["($after IS NULL OR x." + ident(key) + " > $after)"]
    where += [f"x.{ident(name)} = $f_{name}" for name in equals]
    if time_property:
        t = ident(time_property)
        where.append(f"($since IS NULL OR x.{t} >= datetime($since))")
        where.append(f"($until IS NULL OR x.{t} <= datetime($until))")
    return (
        f"MATCH (x:{ident(label)})\n"
        f"WHERE {' AND '.join(where)}\n"
        f"RETURN {projection('x', fields, times)} AS props ORDER BY x.{ident(key)} LIMIT $limit"
    )


def deviations_since(fields: Sequence[str], times: Sequence[str]) -> str:
    return (
        "MATCH (d:Deviation)\n"
        "WHERE d.ingested_at > datetime($since)\n"
        f"RETURN {projection('d', fields, times)} AS props, toString(d.ingested_at) AS at\n"
        "ORDER BY d.ingested_at\n"
        "LIMIT 500"
    )


def timeline(label: str, key: str) -> str:
    """Everything one relationship away from a node, for its timeline (capped)."""
    return (
        f"MATCH (x:{ident(label)} {{{ident(key)}: $key}})\n"
        "MATCH (x)-[r]-(e)\n"
        "RETURN labels(e)[0] AS label, properties(e) AS props, type(r) AS type\n"
        "LIMIT $cap"
    )


# -- proactive risk (graph/risk.py) -------------------------------------------------------------

RISK_OPERATIONS = """
MATCH (o:Operation)
WHERE coalesce(o.actual_start, o.planned_start) >= datetime($since)
  AND coalesce(o.actual_start, o.planned_start) < datetime($until)
OPTIONAL MATCH (o)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (ord:ProductionOrder)-[:HAS_OPERATION]->(o)
RETURN o.operation_id AS operation, coalesce(o.actual_start, o.planned_start) AS start,
       coalesce(o.actual_end, o.planned_end) AS end, m.machine_id AS machine,
       ord.order_id AS order
LIMIT $cap
"""

# Machine-state intervals chain: a state with no end from its source ends where the machine's
# next state begins, whichever file, run or live message brought either (ordered by time).
STATE_TIMELINES = """
UNWIND $machines AS key
MATCH (:Machine {machine_id: key})-[:HAD_STATE]->(s:MachineState)
WHERE s.start >= datetime($since) OR s.end IS NULL OR s.end >= datetime($since)
RETURN key AS machine, s.state_id AS id, s.start AS start, s.end AS end,
       s.end_inferred AS inferred, s.state AS state, s.reason_code AS reason
"""

CLOSE_STATES = """
UNWIND $rows AS row
MATCH (s:MachineState {state_id: row.id})
SET s.end = datetime(row.end), s.duration_s = row.seconds, s.end_inferred = true
"""

# A repeated observation of the state a machine is already in (each /current poll, each day
# file's first line) is the same interval, not a new one.
MERGE_REPEATED_STATES = """
UNWIND $ids AS key
MATCH (s:MachineState {state_id: key})
DETACH DELETE s
"""

# Alarms chain like states: one raised in one file is cleared by its data item's next return
# to Normal, whichever file, run or message brought it: an alarm that its own stream cleared,
# or a Normal kept for this (level 'Normal'). Open alarms of any age, the rest since $since.
ALARM_TIMELINES = """
UNWIND $machines AS key
MATCH (:Machine {machine_id: key})-[:RAISED]->(a:Alarm)
WHERE a.data_item IS NOT NULL
  AND (a.cleared_at IS NULL OR a.cleared_inferred = true OR a.cleared_at >= datetime($since))
RETURN key AS machine, a.alarm_id AS id, a.data_item AS item, a.level AS level,
       a.raised_at AS raised, a.cleared_at AS cleared, a.cleared_inferred AS inferred
"""

CLEAR_ALARMS = """
UNWIND $rows AS row
MATCH (a:Alarm {alarm_id: row.id})
SET a.cleared_at = datetime(row.at), a.cleared_inferred = true
"""

# Live sources (MQTT) resume a machine's open alarms after a restart.
OPEN_MACHINE_ALARMS = """
MATCH (m:Machine {machine_id: $machine})-[:RAISED]->(a:Alarm)
WHERE a.cleared_at IS NULL AND a.level IN ['Warning', 'Fault']
RETURN a.alarm_id AS id, a.code AS code, a.raised_at AS at
"""

# Workflows: rules' triggers, where a deviation happened, who was on shift, closing the loop.
WORKFLOW_DEVIATIONS = """
MATCH (d:Deviation)
WHERE d.deviation_type IN $types
RETURN d.deviation_id AS id, d.deviation_type AS type, d.severity AS severity,
       d.start AS start, d.description AS description
ORDER BY d.start, d.deviation_id
"""

WORKFLOW_DEVIATIONS_BY_ID = """
UNWIND $ids AS key
MATCH (d:Deviation {deviation_id: key})
RETURN d.deviation_id AS id, d.deviation_type AS type, d.severity AS severity,
       d.start AS start, d.description AS description
ORDER BY d.start, d.deviation_id
"""

DEVIATION_MACHINES = """
UNWIND $ids AS key
MATCH (d:Deviation {deviation_id: key})-[:ABOUT]->(m:Machine)
OPTIONAL MATCH (l:Line)-[:HAS_MACHINE]->(m)
RETURN key AS id, m.machine_id AS machine, l.line_id AS line
"""

DEVIATION_OPERATION_MACHINES = """
UNWIND $ids AS key
MATCH (d:Deviation {deviation_id: key})-[:ABOUT]->(:Operation)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (l:Line)-[:HAS_MACHINE]->(m)
RETURN key AS id, m.machine_id AS machine, l.line_id AS line
"""

DEVIATION_ORDER_MACHINES = """
UNWIND $ids AS key
MATCH (d:Deviation {deviation_id: key})-[:ABOUT]->(o:ProductionOrder)
OPTIONAL MATCH (o)-[:HAS_OPERATION]->(:Operation)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (l:Line)-[:HAS_MACHINE]->(m)
RETURN key AS id, m.machine_id AS machine, l.line_id AS line, o.order_id AS order
"""

ORDER_LINES = """
UNWIND $orders AS key
MATCH (o:ProductionOrder {order_id: key})-[:HAS_OPERATION]->(:Operation)-[:ON_MACHINE]->(m:Machine)
OPTIONAL MATCH (l:Line)-[:HAS_MACHINE]->(m)
RETURN key AS order, m.machine_id AS machine, l.line_id AS line
"""

SHIFT_CREW = """
UNWIND $lines AS key
MATCH (:Line {line_id: key})<-[:ON_LINE]-(s:Shift)
WHERE s.start <= datetime($at) AND s.end > datetime($at)
MATCH (p:Person)-[:WORKED]->(s)
RETURN DISTINCT p.person_id AS person, p.role AS role
"""

PEOPLE_SKILL = """
UNWIND $people AS key
MATCH (p:Person {person_id: key})-[k:HAS_SKILL]->(:Skill {skill_id: $skill})
RETURN key AS person, k.level AS level, k.certified AS certified, k.valid_until AS valid_until
"""

SKILLED_PEOPLE = """
MATCH (:Skill {skill_id: $skill})<-[:HAS_SKILL]-(p:Person)
RETURN p.person_id AS person, p.role AS role
"""

PEOPLE_WITH_ROLE = """
MATCH (p:Person)
WHERE p.role = $role
RETURN p.person_id AS person, p.role AS role
"""

COMPLETED_WORKFLOW_ACTIONS = """
MATCH (a:Action)
WHERE a.workflow IS NOT NULL AND a.status = 'complete'
MATCH (a)-[:RESULTED_IN]->(dec:Decision)
MATCH (a)-[:ABOUT]->(d:Deviation)
OPTIONAL MATCH (dec)-[:HAS_OUTCOME]->(out:Outcome)
RETURN a.action_id AS action, dec.decision_id AS decision, d.deviation_id AS deviation,
       d.status AS status, out.outcome_id AS outcome
"""

ACTION_DEVIATIONS = """
MATCH (:Action {action_id: $action})-[:ABOUT]->(d:Deviation)
RETURN d.deviation_id AS deviation
"""

# A machine's alarms and states during the work that ran on it: an operation's window (actual
# times, else planned), or each operation's window of an order.
WINDOW_OWNERS = {
    "Operation": "(o:Operation {operation_id: k})",
    "ProductionOrder": "(:ProductionOrder {order_id: k})-[:HAS_OPERATION]->(o:Operation)",
}
WINDOW_EVENTS = {
    "alarms": (
        "RAISED",
        "Alarm",
        "x.raised_at <= e AND (x.cleared_at IS NULL OR x.cleared_at >= s) "
        "AND coalesce(x.level, '') <> 'Normal'",
    ),
    "states": ("HAD_STATE", "MachineState", "x.start <= e AND (x.end IS NULL OR x.end >= s)"),
}


def events_during(owner: str, kind: str, fields: Sequence[str], times: Sequence[str]) -> str:
    rel_type, label, overlaps = WINDOW_EVENTS[kind]
    return (
        f"UNWIND $keys AS k\nMATCH {WINDOW_OWNERS[owner]}-[:ON_MACHINE]->(m:Machine)\n"
        "WITH k, m, coalesce(o.actual_start, o.planned_start) AS s,\n"
        "     coalesce(o.actual_end, o.planned_end) AS e\n"
        "WHERE s IS NOT NULL AND e IS NOT NULL\n"
        f"MATCH (m)-[:{ident(rel_type)}]->(x:{ident(label)})\n"
        f"WHERE {overlaps}\n"
        f"RETURN DISTINCT k AS key, {projection('x', fields, times)} AS props"
    )


# Identity: other systems' IDs for our entities (graph/identity.py).
ALIASES = """
MATCH (a:Alias)
RETURN a.entity_label AS label, a.other_id AS alias, a.business_key AS key,
       coalesce(a.system, '') AS system, a.source_system AS source_system,
       a.source_record AS source_record
ORDER BY label, alias, system
"""

REMOVE_ALIAS = """
MATCH (a:Alias {alias_id: $id})
DELETE a
RETURN count(*) AS removed
"""


def merge_properties(label: str, key: str, names: Sequence[str]) -> str:
    """Give the node ``$key`` the values only the node ``$alias`` has (its own win), and
    keep it ``unresolved`` only if both were."""
    copied = "".join(f", t.{ident(n)} = coalesce(t.{ident(n)}, a.{ident(n)})" for n in names)
    return (
        f"MATCH (a:{ident(label)} {{{ident(key)}: $alias}})\n"
        f"MATCH (t:{ident(label)} {{{ident(key)}: $key}})\n"
        "SET t.unresolved = CASE WHEN a.unresolved AND t.unresolved THEN true END"
        f"{copied}"
    )


def move_relationships(label: str, key: str, rel_type: str, other: str, outgoing: bool) -> str:
    """Move the node ``$alias``'s relationships of one type to the node ``$key`` (merged
    with one it already has to the same node; a link between the two is dropped)."""
    node = f"{{{ident(key)}: $alias}}"
    if outgoing:
        found, made = f"(a)-[r:{ident(rel_type)}]->(b:{ident(other)})", "(t)-[x:{}]->(b)"
    else:
        found, made = f"(a)<-[r:{ident(rel_type)}]-(b:{ident(other)})", "(t)<-[x:{}]-(b)"
    return (
        f"MATCH (a:{ident(label)} {node})\n"
        f"MATCH (t:{ident(label)} {{{ident(key)}: $key}})\n"
        f"MATCH {found}\n"
        "WHERE b <> t AND b <> a\n"
        f"MERGE {made.format(ident(rel_type))}\n"
        "ON CREATE SET x += properties(r)\n"
        "DELETE r\n"
        "RETURN count(*) AS moved"
    )


def delete_node(label: str, key: str) -> str:
    """Remove the node ``$alias`` (and what links it still has) once merged."""
    return f"MATCH (a:{ident(label)} {{{ident(key)}: $alias}})\nDETACH DELETE a"


def rename_node(label: str, key: str) -> str:
    """Give the node ``$alias`` its business key ``$key`` (no node had that key yet)."""
    return f"MATCH (a:{ident(label)} {{{ident(key)}: $alias}})\nSET a.{ident(key)} = $key"


def identities(label: str, key: str, named: bool) -> str:
    """Every node of a label with its name (if the label has one) and whether it is
    ``unresolved``: what ``aliases suggest`` compares."""
    name = "x.name" if named else "null"
    return (
        f"MATCH (x:{ident(label)})\n"
        f"RETURN x.{ident(key)} AS key, {name} AS name, x.unresolved AS unresolved"
    )
