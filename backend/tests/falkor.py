"""The object the ``falkor`` fixture yields: a running FalkorDB server and a client connected to it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from falkordb import FalkorDB, Graph

from app.services.falkordb_server import FalkorDBServer


@dataclass
class FalkorInstance:
    """Host/port of the session's FalkorDB server plus a connected ``falkordb.FalkorDB`` client.

    The server is shared by the whole session: use ``fresh_graph()`` (a uniquely named graph) so no
    test sees another's nodes.
    """

    server: FalkorDBServer
    client: FalkorDB

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def unique_graph_name(self, prefix: str = "test") -> str:
        """A graph name no other test uses."""
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    def fresh_graph(self, prefix: str = "test") -> Graph:
        """A new, empty, uniquely named graph on the shared server."""
        return self.client.select_graph(self.unique_graph_name(prefix))
