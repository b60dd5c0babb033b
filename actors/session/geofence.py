"""A user's geofenced store visits: one visit per user per store, ever.

Reporting a location within `radius_m` (great-circle distance) of a store records one
visit per user per store, ever. Coordinates are integer micro-degrees; the distance is
computed in floats and never stored.

A part of the session decider (`actors/session/__init__.py`), which checks the command's
fields and user first. Pure: no I/O, clock, randomness or logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import asin, cos, radians, sin, sqrt
from operator import attrgetter

import immutables

from saleday.actors.decider import Decider, InvalidCommand
from saleday.actors.fields import is_int64
from saleday.events.registry import event_type

Store = tuple[str, int, int, str, int]
"""A geofenced store `(store_id, lat_e6, lon_e6, campaign, radius_m)`."""
Visits = immutables.Map[str, int]
"""The stores the user visited: store id -> when first within its geofence."""
EARTH_RADIUS_M = 6_371_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportLocation:
    """The user is at `(lat_e6, lon_e6)`; `stores` are the geofenced stores to check."""

    user: str
    lat_e6: int
    lon_e6: int
    now: int
    stores: tuple[Store, ...]


@event_type("sessions.store_visited")
@dataclass(frozen=True, slots=True, kw_only=True)
class StoreVisited:
    """The user was first within a store's geofence at `at`: the live-stream coupon
    of `campaign` is theirs to claim."""

    user: str
    store_id: str
    campaign: str
    at: int


EMPTY: Visits = immutables.Map()
"""No store visited yet."""


def decide(command: ReportLocation, state: Visits) -> list[StoreVisited] | InvalidCommand:
    """A visit to every store near enough and not visited before, in the given order."""
    bad = _bad_location(command)
    if bad is not None:
        return bad
    events: list[StoreVisited] = []
    seen: set[str] = set()
    for store_id, lat_e6, lon_e6, campaign, radius_m in command.stores:
        if store_id in state or store_id in seen:
            continue
        if distance_m(command.lat_e6, command.lon_e6, lat_e6, lon_e6) <= radius_m:
            seen.add(store_id)
            events.append(StoreVisited(user=command.user, store_id=store_id, campaign=campaign,
                                       at=command.now))
    return events


def distance_m(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    """The great-circle (haversine) distance in metres between two points in micro-degrees."""
    phi1, phi2 = radians(lat1_e6 / 1e6), radians(lat2_e6 / 1e6)
    dphi, dlambda = phi2 - phi1, radians((lon2_e6 - lon1_e6) / 1e6)
    a = sin(dphi / 2) ** 2 + cos(phi1) * cos(phi2) * sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * asin(sqrt(min(a, 1.0)))


def _bad_location(command: ReportLocation) -> InvalidCommand | None:
    """What is wrong with a location report's coordinates or stores, if anything."""
    if not _on_earth(command.lat_e6, command.lon_e6):
        return InvalidCommand(reason=f"({command.lat_e6}, {command.lon_e6}) is not a "
                                     f"latitude/longitude in micro-degrees")
    stores = command.stores
    if type(stores) not in (tuple, list):
        return InvalidCommand(reason="stores must be a sequence of "
                                     "(store_id, lat_e6, lon_e6, campaign, radius_m)")
    for i, store in enumerate(stores):
        if (type(store) not in (tuple, list) or len(store) != 5
                or not all(type(store[k]) is str and store[k] for k in (0, 3))
                or not all(is_int64(store[k]) for k in (1, 2, 4))
                or not _on_earth(store[1], store[2]) or store[4] < 0):
            return InvalidCommand(reason=f"store {i} must be (store_id, lat_e6, lon_e6, "
                                         f"campaign, radius_m >= 0), not {store!r}")
    return None


def _on_earth(lat_e6: int, lon_e6: int) -> bool:
    return -90_000_000 <= lat_e6 <= 90_000_000 and -180_000_000 <= lon_e6 <= 180_000_000


def evolve(state: Visits, event: StoreVisited) -> Visits:
    """The visits after `event`."""
    return state.set(event.store_id, event.at)


geofence_decider: Decider[ReportLocation, StoreVisited, Visits] = Decider(
    kind="session.geofence", initial=lambda user: EMPTY, decide=decide, evolve=evolve,
    entity_of=attrgetter("user"), commands=(ReportLocation,), events=(StoreVisited,))
