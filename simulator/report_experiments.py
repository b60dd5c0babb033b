"""The report's tables for experiments (detected against the declared truth) and for
recorded behaviour (events, windows, late and dropped), laid out as `report.Section`s."""

from __future__ import annotations

from typing import Any

from saleday.simulator.results import RunReport


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v * 100:+.1f} %"


def outcome_sections(report: RunReport) -> list[Any]:
    from saleday.simulator.report import Section

    out = []
    for e in report.experiments:
        rows = []
        for v in e["variants"]:
            ci = v.get("rel_ci")
            rows.append((v["variant"], f"{v['exposures']:,}", f"{v['conversions']:,}",
                         "-" if v["rate"] is None else f"{v['rate'] * 100:.2f} %",
                         _pct(v.get("rel_lift")),
                         "-" if not ci else f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]",
                         "-" if v.get("p_value") is None else f"{v['p_value']:.4f}",
                         _pct(v.get("true_rel_lift")) if v["variant"] != e["control"] else "control",
                         v.get("verdict") or ("-" if v["variant"] == e["control"] else "not readable yet")))
        srm = e["srm"]
        rows.append(("SRM check", "", "", "", "", "", "-" if srm["p_value"] is None else
                     f"{srm['p_value']:.4f}", "", "MISMATCH" if srm["mismatch"] else "ok"))
        out.append(Section(f"experiment {e['experiment']} ({e['conversion']}, {e['status']})",
                           ("variant", "exposed", "converted", "rate", "lift", "95 % CI",
                            "p", "true lift", "verdict"), rows))
    b = report.behaviour
    if b.get("events") is not None:
        rows = [("behaviour events", f"{b['events']:,}"),
                ("per placed order", f"{b['events_per_placed_order']:g}")]
        for name in ("browse-5m", "trail-30m"):
            if name in b:
                w = b[name]
                rows += [(f"{name} windows", f"{w['windows']:,}"),
                         (f"{name} late / dropped", f"{w['late']:,} / {w['dropped']:,}")]
        t = b.get("triggers")
        if t:
            rows += [(f"trigger {t['rule']}: firings", f"{t['firings']:,}"),
                     ("pushes delivered", f"{t['pushes_delivered']:,}"),
                     ("pushes capped (3 / 24 h)", f"{t['pushes_capped']:,}"),
                     ("users ordering after a push", f"{t['users_converted_after_push']:,}"
                      f" of {t['users_pushed']:,}")]
        out.append(Section("behaviour", ("", "value"), rows))
    return out
