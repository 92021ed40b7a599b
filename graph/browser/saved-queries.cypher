// Saved Cypher queries for analysts. Each starts with a "// name:" line; parameters are set
// in Neo4j Browser with ":param deviation => 'DEV-SCRAP-1000013/0020'" (or in Studio's
// parameter panel). They run unchanged on Neo4j and on the embedded ArcadeDB.

// name: Deviation and its neighbourhood
// params: deviation
MATCH (d:Deviation {deviation_id: $deviation})-[r]-(n)
OPTIONAL MATCH (n)-[r2:ON_MACHINE|CONSUMED_BY|PERFORMED|SUPPLIED|HAS_OPERATION]-(m)
RETURN d, r, n, r2, m
LIMIT 300;

// name: Root causes of a deviation, with their explanation
// params: deviation
MATCH (d:Deviation {deviation_id: $deviation})-[c:CAUSED_BY|CONTRIBUTED_TO]->(cause)
RETURN d, c, cause, c.rank AS rank, c.score AS score, c.explanation AS explanation
ORDER BY rank;

// name: Genealogy of a lot: supplier, the work that consumed it, the orders it went into
// params: lot
MATCH (l:MaterialLot {lot_id: $lot})
OPTIONAL MATCH (s:Supplier)-[sup:SUPPLIED]->(l)
OPTIONAL MATCH (l)-[c:CONSUMED_BY]->(o:Operation)<-[h:HAS_OPERATION]-(ord:ProductionOrder)
OPTIONAL MATCH (fg:MaterialLot)-[p:PRODUCED_BY]->(ord)
RETURN s, sup, l, c, o, h, ord, p, fg
LIMIT 300;

// name: A machine's last 24 hours
// params: machine, until
MATCH (m:Machine {machine_id: $machine})-[r:HAD_STATE|RAISED|HAD_MAINTENANCE|HAD_CHANGEOVER]->(e)
WITH m, r, e, coalesce(e.start, e.raised_at, e.scheduled_at) AS at
WHERE at >= datetime($until) - duration('P1D') AND at <= datetime($until)
RETURN m, r, e, at
ORDER BY at;

// name: Common causes across deviations of one type
// params: type
MATCH (d:Deviation {deviation_type: $type})-[:CAUSED_BY]->(cause)
RETURN labels(cause)[0] AS label,
       coalesce(cause.lot_id, cause.machine_id, cause.person_id, cause.maintenance_id,
                cause.changeover_id, cause.supplier_id, cause.alarm_id) AS cause,
       count(d) AS deviations
ORDER BY deviations DESC
LIMIT 10;

// name: Decisions and outcomes for a deviation type
// params: type
MATCH (p:Person)-[:DECIDED]->(dec:Decision)-[:ABOUT]->(d:Deviation {deviation_type: $type})
OPTIONAL MATCH (dec)-[:HAS_OUTCOME]->(o:Outcome)
RETURN d.deviation_id AS deviation, dec.summary AS decision, o.result AS outcome,
       o.description AS how, p.name AS decided_by, dec.decided_at AS decided_at
ORDER BY decided_at DESC
LIMIT 25;
