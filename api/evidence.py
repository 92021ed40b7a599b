"""The evidence-graph view: a deviation, its ranked causes and the evidence paths between
them, drawn as an interactive graph (Cytoscape.js, vendored from npm: no CDN at run time)."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from opsgraph.graph.rca import RcaResult

LIBRARY = "cytoscape-3.34.4.min.js"


def library() -> str:
    return resources.files("opsgraph.api").joinpath("static", LIBRARY).read_text()


def elements(result: RcaResult) -> list[dict[str, Any]]:
    """Cytoscape elements: the deviation, every node and relationship on the evidence paths,
    and the causes marked with their rank and score."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[str, dict[str, Any]] = {}
    root = f"Deviation:{result.deviation}"
    nodes[root] = {"id": root, "label": result.deviation, "kind": "Deviation", "role": "deviation"}
    for rank, cause in enumerate(result.presented, start=1):
        for path in cause.evidence:
            previous = root
            for index in range(2, len(path), 2):
                step, hop = path[index], path[index - 1]
                node_id = f"{step['label']}:{step['key']}"
                nodes.setdefault(
                    node_id,
                    {"id": node_id, "label": step["key"], "kind": step["label"], "role": "path"},
                )
                start, end = (
                    (previous, node_id) if hop["direction"] == "out" else (node_id, previous)
                )
                edge_id = f"{start}|{hop['type']}|{end}"
                when = f" {hop['at'][:16].replace('T', ' ')}" if hop.get("at") else ""
                edges.setdefault(
                    edge_id,
                    {
                        "id": edge_id,
                        "source": start,
                        "target": end,
                        "label": f"{hop['type']}{when}",
                    },
                )
                previous = node_id
        cause_id = f"{cause.label}:{cause.key}"
        nodes.setdefault(cause_id, {"id": cause_id, "label": cause.key, "kind": cause.label})
        nodes[cause_id].update(
            role="cause", rank=rank, score=round(cause.score, 2), label=f"#{rank} {cause.key}"
        )
    return [{"data": n} for n in nodes.values()] + [{"data": e} for e in edges.values()]


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Root causes of {title}</title>
<style>
 body {{ margin: 0; font: 14px system-ui, sans-serif; display: flex; height: 100vh; }}
 #graph {{ flex: 3; }}
 aside {{ flex: 2; padding: 12px 16px; overflow: auto; background: #f6f7f9; }}
 li {{ margin-bottom: 8px; }} .score {{ color: #666; }}
</style>
{script}
</head><body>
<div id="graph"></div>
<aside><h2>{title}</h2><p>{description}</p><ol>{causes}</ol>
<p id="status">drawing…</p></aside>
<script>
const cy = cytoscape({{
  container: document.getElementById('graph'),
  elements: {elements},
  style: [
    {{ selector: 'node', style: {{ 'label': 'data(label)', 'font-size': 9,
       'background-color': '#A5ABB6', 'text-valign': 'bottom', 'text-wrap': 'wrap' }} }},
    {{ selector: 'node[role = "deviation"]',
       style: {{ 'background-color': '#F16667', 'width': 44, 'height': 44 }} }},
    {{ selector: 'node[role = "cause"]', style: {{ 'background-color': '#F79767',
       'border-width': 3, 'border-color': '#C0392B', 'width': 36, 'height': 36 }} }},
    {{ selector: 'edge', style: {{ 'label': 'data(label)', 'font-size': 7,
       'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'width': 1.5,
       'line-color': '#9AA1AC', 'target-arrow-color': '#9AA1AC' }} }}
  ],
  layout: {{ name: 'breadthfirst', directed: false, roots: '#' + CSS.escape({root}), padding: 20 }}
}});
document.body.dataset.nodes = cy.nodes().length;
document.body.dataset.edges = cy.edges().length;
document.getElementById('status').textContent =
  cy.nodes().length + ' nodes, ' + cy.edges().length + ' relationships';
</script></body></html>
"""


def render(result: RcaResult, script_src: str | None = None) -> str:
    """A page for one analysis. With ``script_src`` the library is loaded from the app;
    without, it is inlined so the file works offline on its own."""
    script = (
        f'<script src="{html.escape(script_src)}"></script>'
        if script_src
        else f"<script>{library()}</script>"
    )
    causes = "".join(
        f"<li><b>{html.escape(c.label)} {html.escape(c.key)}</b> "
        f"<span class='score'>({html.escape(c.cause_type)}, confidence {c.confidence:.0%})"
        f"</span><br>{html.escape(c.explanation)}</li>"
        for c in result.presented
    )
    if not result.clear:
        causes = "<li><b>No clear cause</b>; nearest candidates:</li>" + causes
    return PAGE.format(
        title=html.escape(result.deviation),
        description=html.escape(result.description),
        causes=causes,
        script=script,
        elements=json.dumps(elements(result)).replace("</", "<\\/"),
        root=json.dumps(f"Deviation:{result.deviation}"),
    )
