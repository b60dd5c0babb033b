"""The referral view: who invited whom, where each user came from, and team formations.

Rows (all `disjoint`: a user's events are in that user's session stream, a team's in its
team stream):
- `user` (key = user): `[first seen at, utm source, utm medium, utm campaign, sessions]`,
  the UTM fields of the user's FIRST session (first touch).
- `invite` (key = invitee): `[inviter, at, utm source, utm medium, utm campaign]`, from
  `sessions.referral_attributed`.
- `team` (key = team): leader, campaign, size, pool, members in join order, status (open,
  completed, expired), when created and ended, the red-packet shares.

Derived when shown (never stored, so they cannot drift): per user the direct invitees,
the downstream `reach` (every descendant), `depth` (generations below the user: 0 for
none, 1 for direct invitees only, ...) and `level` (generations above: 0 for a user nobody
invited); the K-factor = invited users / users seen (docs/PROJECTIONS.md); top inviters.
GraphML export: `graphml(view)`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, ClassVar

from saleday.events.envelope import Envelope
from saleday.projections.view import DISJOINT, View

FIRST_SEEN, SOURCE, MEDIUM, CAMPAIGN, SESSIONS = range(5)
INVITER, AT = 0, 1


class ReferralsView(View):
    name = "referrals"
    tables: ClassVar[dict[str, str]] = {"user": DISJOINT, "invite": DISJOINT, "team": DISJOINT}

    def apply(self, env: Envelope) -> None:
        self.apply_batch((env,))

    def apply_batch(self, envs: Sequence[Envelope]) -> None:
        users, invites, teams = self.t["user"], self.t["invite"], self.t["team"]
        for env in envs:
            kind = env.type
            d = env.data
            if kind == "sessions.session_started":
                user = d["user"]
                row = users.get(user)
                if row is None:
                    users[user] = [d["started_at"], d["utm_source"], d["utm_medium"],
                                   d["utm_campaign"], 1]
                else:
                    row[SESSIONS] += 1
                self.dirty["user"].add(user)
            elif kind == "sessions.referral_attributed":
                user = d["user"]
                if user not in invites:  # first touch only
                    invites[user] = [d["inviter"], d["attributed_at"], d["utm_source"],
                                     d["utm_medium"], d["utm_campaign"]]
                    self.dirty["invite"].add(user)
            elif kind.startswith("teams."):
                team = d["team"]
                row = teams.get(team)
                if row is None:
                    row = teams[team] = {"leader": "", "campaign": d.get("campaign", ""),
                                         "size": 0, "pool_cents": 0, "members": [],
                                         "status": "open", "created_at": 0, "ended_at": 0,
                                         "shares": []}
                if kind == "teams.team_created":
                    row.update(leader=d["leader"], campaign=d["campaign"], size=d["size"],
                               pool_cents=d["pool_cents"], created_at=env.recorded_at)
                    if d["leader"] not in row["members"]:
                        row["members"].insert(0, d["leader"])
                elif kind == "teams.member_joined":
                    if d["user"] not in row["members"]:
                        row["members"].append(d["user"])
                elif kind == "teams.team_completed":
                    row["members"] = list(d["members"])
                    row["status"] = "completed"
                    row["ended_at"] = env.recorded_at
                elif kind == "teams.red_packet_split":
                    row["shares"] = [list(s) for s in d["shares"]]
                elif kind == "teams.team_expired_unfilled":
                    row["status"] = "expired"
                    row["ended_at"] = env.recorded_at
                self.dirty["team"].add(team)

    # -- the graph -------------------------------------------------------------------------

    def graph(self) -> dict[str, Any]:
        """Per user: inviter, direct invitees, reach, depth and level; plus any cycles
        (a log that breaks the first-touch rule), which are reported, never followed."""
        invites = self.t["invite"]
        children: dict[str, list[str]] = {}
        for invitee in sorted(invites):
            children.setdefault(invites[invitee][INVITER], []).append(invitee)
        nodes = sorted(set(self.t["user"]) | set(invites) | set(children))
        reach: dict[str, int] = {}
        depth: dict[str, int] = {}
        cycles: list[str] = []
        state: dict[str, int] = {}  # 1: on the path, 2: done
        for root in nodes:
            if root in state:
                continue
            stack = [(root, iter(children.get(root, ())))]
            state[root] = 1
            while stack:
                node, kids = stack[-1]
                kid = next(kids, None)
                if kid is None:
                    stack.pop()
                    state[node] = 2
                    below = children.get(node, ())
                    reach[node] = sum(1 + reach.get(k, 0) for k in below if state.get(k) == 2)
                    depth[node] = max((1 + depth.get(k, 0) for k in below), default=0)
                elif state.get(kid) == 1:
                    cycles.append(kid)
                elif kid not in state:
                    state[kid] = 1
                    stack.append((kid, iter(children.get(kid, ()))))
        level: dict[str, int] = {}
        for node in nodes:
            chain, cur = [], node
            while cur in invites and cur not in level and len(chain) <= len(nodes):
                chain.append(cur)
                cur = invites[cur][INVITER]
            base = level.get(cur, 0)
            for i, n in enumerate(reversed(chain)):
                level[n] = base + i + 1
            level.setdefault(node, 0)
        return {"nodes": nodes, "children": children, "reach": reach, "depth": depth,
                "level": level, "cycles": sorted(set(cycles))}

    def k_factor(self) -> float | None:
        seen = len(set(self.t["user"]) | set(self.t["invite"]))
        return round(len(self.t["invite"]) / seen, 6) if seen else None

    def top_inviters(self, n: int = 10, graph: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        g = graph or self.graph()
        ranked = sorted(g["children"], key=lambda u: (-len(g["children"][u]), -g["reach"][u], u))
        return [{"user": u, "invited": len(g["children"][u]), "reach": g["reach"][u],
                 "depth": g["depth"][u]} for u in ranked[:n]]

    def user(self, user: str, graph: dict[str, Any] | None = None) -> dict[str, Any] | None:
        g = graph or self.graph()
        if user not in g["level"]:
            return None
        row = self.t["user"].get(user)
        invite = self.t["invite"].get(user)
        return {"user": user, "first_seen": row[FIRST_SEEN] if row else None,
                "utm": ({"source": row[SOURCE], "medium": row[MEDIUM], "campaign": row[CAMPAIGN]}
                        if row else None),
                "sessions": row[SESSIONS] if row else 0,
                "invited_by": invite[INVITER] if invite else None,
                "invited_at": invite[AT] if invite else None,
                "invitees": g["children"].get(user, []),
                "reach": g["reach"].get(user, 0), "depth": g["depth"].get(user, 0),
                "level": g["level"].get(user, 0)}

    def to_json(self) -> dict[str, Any]:
        g = self.graph()
        users = {u: self.user(u, g) for u in g["nodes"]}
        sources: dict[str, int] = {}
        for row in self.t["user"].values():
            sources[row[SOURCE] or "(none)"] = sources.get(row[SOURCE] or "(none)", 0) + 1
        teams = self.t["team"]
        by_status: dict[str, int] = {}
        for t in teams.values():
            by_status[t["status"]] = by_status.get(t["status"], 0) + 1
        return {"users_seen": len(users), "invited": len(self.t["invite"]),
                "inviters": len(g["children"]), "k_factor": self.k_factor(),
                "max_depth": max(g["depth"].values(), default=0), "cycles": g["cycles"],
                "utm_sources": dict(sorted(sources.items())),
                "top_inviters": self.top_inviters(10, g),
                "teams": {"count": len(teams), "by_status": dict(sorted(by_status.items())),
                          "teams": {t: teams[t] for t in sorted(teams)}},
                "users": users}


GRAPHML_NS = "http://graphml.graphdrawing.org/xmlns"


def graphml(view: ReferralsView) -> bytes:
    """The referral graph as GraphML: one node per user seen (UTM, reach, depth, level),
    one directed edge inviter -> invitee (with when it was attributed and the campaign)."""
    g = view.graph()
    ET.register_namespace("", GRAPHML_NS)
    root = ET.Element(f"{{{GRAPHML_NS}}}graphml")
    keys = [("utm_source", "node", "string"), ("utm_medium", "node", "string"),
            ("utm_campaign", "node", "string"), ("first_seen", "node", "long"),
            ("reach", "node", "int"), ("depth", "node", "int"), ("level", "node", "int"),
            ("attributed_at", "edge", "long"), ("edge_utm_campaign", "edge", "string")]
    for name, domain, kind in keys:
        ET.SubElement(root, f"{{{GRAPHML_NS}}}key", id=name, attrib={
            "for": domain, "attr.name": name.removeprefix("edge_"), "attr.type": kind})
    graph = ET.SubElement(root, f"{{{GRAPHML_NS}}}graph", id="referrals", edgedefault="directed")

    def data(parent: ET.Element, key: str, value: Any) -> None:
        ET.SubElement(parent, f"{{{GRAPHML_NS}}}data", key=key).text = str(value)

    users = view.t["user"]
    for user in g["nodes"]:
        node = ET.SubElement(graph, f"{{{GRAPHML_NS}}}node", id=user)
        row = users.get(user)
        if row is not None:
            data(node, "utm_source", row[SOURCE])
            data(node, "utm_medium", row[MEDIUM])
            data(node, "utm_campaign", row[CAMPAIGN])
            data(node, "first_seen", row[FIRST_SEEN])
        data(node, "reach", g["reach"].get(user, 0))
        data(node, "depth", g["depth"].get(user, 0))
        data(node, "level", g["level"].get(user, 0))
    invites = view.t["invite"]
    for i, invitee in enumerate(sorted(invites)):
        inviter, at, _, _, campaign = invites[invitee]
        edge = ET.SubElement(graph, f"{{{GRAPHML_NS}}}edge", id=f"e{i}", source=inviter,
                             target=invitee)
        data(edge, "attributed_at", at)
        data(edge, "edge_utm_campaign", campaign)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
