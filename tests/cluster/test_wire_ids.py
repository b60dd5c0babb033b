"""A request's correlation and causation ids cross the wire between gateway and shard."""

from __future__ import annotations

from saleday.actors.host import Request
from saleday.actors.sku import COMMANDS, ReserveStock
from saleday.cluster.wire import Wire

WIRE = Wire(COMMANDS)


def test_the_ids_survive_the_wire():
    """Encoded and decoded, a request keeps its command, correlation and causation ids."""
    command = ReserveStock(reservation_id="O1/0", user="u1", sku="a", qty=1, now=1, deadline=2)
    sent = [Request("O1/try/0", command, "O1", "team-000@7"), Request("x", command)]
    assert WIRE.decode_requests(WIRE.encode_requests(sent)) == sent


def test_an_unencodable_causation_id_is_named():
    """A causation id msgpack cannot carry is named as the field that cannot cross."""
    command = ReserveStock(reservation_id="r", user="u1", sku="a", qty=1, now=1, deadline=2)
    problem = WIRE.unencodable(Request("c", command, "", "\ud800"))
    assert problem is not None and "causation_id" in problem
