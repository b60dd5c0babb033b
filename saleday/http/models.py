"""The request and response bodies of the API (pydantic), and the problem body.

Ids are short printable strings (no slashes: they appear in paths); money is integer
cents, times integer milliseconds since the epoch. Requests forbid unknown fields, so a
misspelt field is a 422, not silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@:-]{1,64}$", examples=["sku-1"])]
CouponId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@:/-]{1,160}$")]
Tag = Annotated[str, Field(max_length=64, pattern=r"^[\x20-\x7e]*$")]
Cents = Annotated[int, Field(ge=0, le=10**12)]
Ms = Annotated[int, Field(ge=0, le=2**53)]
MAX_SAFE = 2**53


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details (plus the refusal's own fields)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""


# -- sessions, coupons, teams, visits -------------------------------------------------------


class SessionIn(In):
    utm_source: Tag = ""
    utm_medium: Tag = ""
    utm_campaign: Tag = ""
    inviter: Id | Literal[""] = ""


class SessionOut(BaseModel):
    user: str
    session_id: str
    first_seen_ms: int
    invited_by: str = Field(description="Who the user is attributed to ('' = nobody).")


class ClaimIn(In):
    campaign: Id


class ClaimOut(BaseModel):
    campaign: str
    coupon_id: str
    value_cents: int | None = None
    min_spend_cents: int | None = None
    valid_until_ms: int | None = None


class CouponOut(BaseModel):
    coupon_id: str
    campaign: str
    value_cents: int
    min_spend_cents: int
    valid_until_ms: int
    status: str
    order_id: str


class TeamIn(In):
    campaign: Id
    pool_cents: int = Field(ge=1, le=10**9)
    size: int = Field(4, ge=2, le=50)
    min_share_cents: int = Field(1, ge=1, le=10**6)
    expires_in_s: int = Field(86_400, ge=60, le=30 * 86_400)


class TeamOut(BaseModel):
    team: str
    leader: str
    campaign: str
    pool_cents: int
    size: int
    members: list[str]
    completed: bool
    expired: bool
    expires_ms: int
    shares: list[tuple[str, int]] = []


class VisitIn(In):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class VisitOut(BaseModel):
    visited: list[str] = Field(description="Stores whose geofence this report entered for "
                               "the first time (each earns its campaign's coupon).")


# -- orders and payments ---------------------------------------------------------------------


class LineIn(In):
    sku: Id
    qty: int = Field(ge=1, le=1000)


class InvoiceIn(In):
    """The invoice asked for at checkout (the fields arrive here: no OCR)."""

    kind: Literal["none", "paper", "electronic"] = Field(
        description="An electronic invoice earns double points once the order is paid.")
    title: Tag = ""
    tax_id: Tag = ""


class OrderIn(In):
    lines: list[LineIn] = Field(min_length=1, max_length=50)
    coupon_id: CouponId | None = None
    invoice: InvoiceIn | None = None
    points: int = Field(0, ge=0, le=10**12, description="Member points to redeem as a "
                        "discount (1 cent each): held when placed, spent when paid, given "
                        "back when the order is cancelled.")


class LineOut(BaseModel):
    sku: str
    qty: int
    unit_prices: list[int] = Field(description="The price of each unit (cents), in tier order.")


class OrderOut(BaseModel):
    order_id: str
    user: str
    status: str = Field(description="trying, placed, paid, cancelled or voided.")
    lines: list[LineOut]
    coupon_id: str
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    payment_deadline_ms: int
    cancel_reason: str
    paid_cents: int
    refunded_cents: int
    points: int = Field(0, description="Member points redeemed on the order.")
    points_cents: int = Field(0, description="What they took off the total.")


class CancelIn(In):
    reason: Tag = "user_cancelled"


class PaymentEventIn(In):
    id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Literal["payment.succeeded", "payment.failed"]
    order_id: Id
    payment_id: Id
    amount_cents: Cents = 0


class PaymentOut(BaseModel):
    order_id: str
    status: str = Field(description="paid, cancelled, refunded, refused, or replayed.")
    reason: str = ""


# -- reads -------------------------------------------------------------------------------------


class TierOut(BaseModel):
    units: int = Field(description="Units in this tier (0 = every unit after the others).")
    price_cents: int
    taken: int


class SkuOut(BaseModel):
    sku: str
    stocked: int
    available: int
    reserved: int
    sold: int
    set_aside: int = Field(description="Units set aside for presale deposit holders "
                                       "(available + reserved + set_aside + sold = stocked).")
    price_cents: int | None = Field(description="What the next unit costs (None: no sale).")
    tier: int | None
    tier_units_left: int | None = Field(description="Units left at this price (None: no end).")
    tiers: list[TierOut]
    per_user_limit: int
    sale_start_ms: int
    sale_end_ms: int
    sale_open: bool
    server_time_ms: int


class ViewOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    view: str
    data: Any


# -- admin -------------------------------------------------------------------------------------


class TierIn(In):
    units: int = Field(ge=0, le=10**9)
    price_cents: Cents


class SaleIn(In):
    tiers: list[TierIn] = Field(min_length=1, max_length=20)
    per_user_limit: int = Field(0, ge=0, le=10**6)
    start_ms: Ms
    end_ms: Ms


class StockIn(In):
    qty: int = Field(ge=1, le=10**9)


class CampaignIn(In):
    campaign: Id
    value_cents: Cents
    min_spend_cents: Cents = 0
    valid_from_ms: Ms
    valid_until_ms: Ms
    budget_coupons: int = Field(0, ge=0, le=10**9)
    budget_cents: Cents = 0


class PriceIn(In):
    price_cents: int = Field(ge=1, le=10**12)


class PriceOut(BaseModel):
    sku: str
    price_cents: int = Field(description="The list price now (0: never set).")
    since_ms: int


class PresaleIn(In):
    units: int = Field(ge=1, le=10**9)
    deposit_cents: Cents
    deposit_value_cents: Cents = Field(description="What a deposit counts for at final "
                                       "payment (e.g. 5000 paid counts as 15000).")
    price_cents: Cents
    deposits_from_ms: Ms
    balance_from_ms: Ms
    balance_until_ms: Ms


class DepositIn(In):
    qty: int = Field(1, ge=1, le=1000)


class BalanceIn(In):
    payment_id: Id
    amount_cents: Cents


class DepositOut(BaseModel):
    sku: str
    deposit_id: str
    qty: int
    status: str = Field(description="held, paid or forfeited.")
    deposit_cents: int
    balance_cents: int = Field(description="What paying it through costs: (price - deposit "
                               "value) x qty.")


class PresaleOut(BaseModel):
    sku: str
    opened: bool
    units: int
    units_left: int
    deposit_cents: int
    deposit_value_cents: int
    price_cents: int
    deposits_from_ms: int
    balance_from_ms: int
    balance_until_ms: int
    deposits: list[DepositOut] = Field(description="The caller's own deposits.")


class LotOut(BaseModel):
    order_ref: str
    points: int
    expires_at_ms: int


class HoldOut(BaseModel):
    order_id: str
    points: int
    until_ms: int


class TakenBackOut(BaseModel):
    order_ref: str
    points: int


class RefundOut(BaseModel):
    order_ref: str
    sku: str
    refund_cents: int


class MemberOut(BaseModel):
    user: str
    tier: str = Field(description="regular, silver, gold or diamond (the last recorded).")
    tiers: list[dict[str, Any]] = Field(description="The tier history: since_ms, tier.")
    orders: int = Field(description="Orders in the member's history (imported or paid).")
    points_balance: int = Field(description="Points that can be redeemed now.")
    points_held: int = Field(description="Points held by orders not yet paid.")
    points_earned: int
    points_redeemed: int
    points_expired: int
    points_taken_back: int = Field(description="Points refunded orders took back.")
    taken_back: list[TakenBackOut] = Field(description="Each refunded order's points "
                                           "taken back.")
    lots: list[LotOut] = Field(description="What is left of each earning, soonest to expire "
                               "first.")
    holds: list[HoldOut]
    protection_refunds: list[RefundOut]


class Accepted(BaseModel):
    accepted: bool = True
    events: list[str] = Field(description="The names of the events recorded (empty when "
                              "nothing changed).")


class Health(BaseModel):
    status: str
    shards: dict[str, int] = {}
