"""The report's tables for members (simulator/members.py): tiers, points, invoices, price
protection and presale conversion, laid out as `report.Section`s."""

from __future__ import annotations

from typing import Any

from saleday.simulator.results import RunReport


def _yuan(cents: int) -> str:
    return f"¥{cents / 100:,.2f}"


def member_sections(report: RunReport) -> list[Any]:
    from saleday.simulator.report import Section

    m = report.members
    if not m:
        return []
    t, p, inv, pr, ps = m["tiers"], m["points"], m["invoices"], m["protection"], m["presale"]
    out = [Section(f"member tiers (RFM as of {m['tiers_as_of']}, {m['tier_rule']})",
                   ("", "members"),
                   [("with imported history", f"{m['members_with_history']:,} "
                     f"({m['history_orders']:,} orders)"),
                    *((tier, f"{n:,}") for tier, n in t.items())])]
    rows = [("earned", f"{p['earned']:,}"),
            *((f"  by invoice: {k}", f"{v:,}") for k, v in p["earned_by_invoice"].items()),
            ("redeemed at checkout", f"{p['redeemed']:,} ({p['orders_redeeming']:,} orders)"),
            ("held, then given back", f"{p['released']:,}"),
            ("expired", f"{p['expired']:,}"),
            ("taken back (refunded orders)", f"{p.get('taken_back', 0):,}"),
            ("balance (earned - redeemed - expired - taken back)", f"{p['balance']:,}"),
            ("invoices asked (electronic / paper / none)",
             f"{inv['electronic']:,} / {inv['paper']:,} / {inv['none']:,}")]
    out.append(Section("member points", ("", "value"), rows))
    rows = [("price drops after the sale", f"{pr['price_drops']:,}"),
            ("claims (paid line x later drop)", f"{pr['claims']:,}"),
            ("lines refunded", f"{pr['lines_refunded']:,}"),
            ("refunded", _yuan(pr["refund_cents"])),
            *((f"  refunded to {k}", f"{v:,}") for k, v in pr["refunded_by_tier"].items()),
            *((f"  refused: {k}", f"{v:,}") for k, v in pr["refused"].items())]
    out.append(Section("price protection", ("", "value"), rows))
    conv = ps["conversion"]
    rows = [("presales", f"{ps['presales']:,}"),
            ("deposits (units)", f"{ps['deposits']:,} ({ps['units_deposited']:,})"),
            ("balances paid", f"{ps['balances_paid']:,}"),
            ("forfeited", f"{ps['forfeited']:,}"),
            ("conversion (balances / deposits)", "-" if conv is None else f"{conv * 100:.1f} %"),
            ("paid in: deposits + balances",
             f"{_yuan(ps['deposit_cents'])} + {_yuan(ps['balance_cents'])}"),
            ("kept of forfeited deposits", _yuan(ps["forfeited_cents"]))]
    st = ps.get("stock")
    if st is not None:   # the deposits' units on their SKUs (flows/presale_stock.py)
        rows.append(("SKU units set aside / sold / returned",
                     f"{st['set_aside']:,} / {st['sold']:,} / {st['returned']:,}"))
    out.append(Section("presale (定金)", ("", "value"), rows))
    return out
