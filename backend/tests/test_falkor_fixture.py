"""The ``falkor`` fixture: a real FalkorDB server doing real Cypher work."""

from __future__ import annotations

from app.services.falkordb_server import ping
from tests.falkor import FalkorInstance


def test_server_answers_ping_on_loopback(falkor: FalkorInstance) -> None:
    assert falkor.host == "127.0.0.1"
    assert falkor.server.running
    assert ping(falkor.host, falkor.port)
    assert falkor.client.connection.ping() is True


def test_create_nodes_and_relationship_then_query_back(falkor: FalkorInstance) -> None:
    graph = falkor.fresh_graph("rules")
    created = graph.query(
        "CREATE (a:Agent {name: $agent, version: 3})-[:USES {weight: 0.75}]->(t:Tool {name: $tool}), "
        "(a)-[:USES {weight: 0.25}]->(:Tool {name: 'calculator'})",
        {"agent": "planner", "tool": "search"},
    )
    assert created.nodes_created == 3
    assert created.relationships_created == 2

    result = graph.query(
        "MATCH (a:Agent)-[u:USES]->(t:Tool) RETURN a.name, a.version, t.name, u.weight ORDER BY u.weight DESC"
    )
    assert result.result_set == [["planner", 3, "search", 0.75], ["planner", 3, "calculator", 0.25]]

    total = graph.query("MATCH (:Agent {name: 'planner'})-[u:USES]->() RETURN count(u), sum(u.weight)")
    assert total.result_set == [[2, 1.0]]

    node = graph.query("MATCH (t:Tool {name: 'search'}) RETURN t").result_set[0][0]
    assert node.labels == ["Tool"]
    assert node.properties == {"name": "search"}


def test_fresh_graphs_are_isolated(falkor: FalkorInstance) -> None:
    first = falkor.fresh_graph()
    second = falkor.fresh_graph()
    assert first.name != second.name
    first.query("CREATE (:Item {n: 1}), (:Item {n: 2})")
    assert first.query("MATCH (i:Item) RETURN sum(i.n)").result_set == [[3]]
    assert second.query("MATCH (i:Item) RETURN count(i)").result_set == [[0]]
    assert first.name in falkor.client.list_graphs()
    first.delete()
    assert first.name not in falkor.client.list_graphs()
