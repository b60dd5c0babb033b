"""Scenarios: what a simulated sale day looks like, as a pydantic model.

A scenario is loaded from a YAML, TOML or JSON file or taken from a named preset
(`double11`, the default; `flash-half-price`; `team-up`; `members`, double11 with members,
history, presales, points and price protection; `countdown-ab`). Its defaults follow public
11.11 figures: a step at midnight to a plateau of ~12x the day's mean rate peaking near
00:05 and halving within ~40 minutes, Zipf-popular SKUs (exponent ~1), a funnel of
view -> cart ~6% and cart -> order ~30%, payments that succeed 99.5% of the time, and
some that never return (the payment deadline must release what they hold).

Times in a scenario are seconds of the simulated sale clock (0 = midnight, when the
sale opens). The window may open `traffic.lead_s` seconds before midnight: visitors
then arrive, browse, claim coupons and form teams, but nobody can buy before 00:00.
`compression` says how many simulated seconds pass per second the system
sees: deadlines (payment window, team expiry) are divided by it, so a two-hour sale with
`compression: 120` is a one-minute rush to the shards, with every deadline scaled alike.

Every number has a documented maximum (the `MAX_*` constants below, listed in
docs/SIMULATOR.md): what one run can hold in memory, and, for the ints that land in
events (stock, prices, budgets, times in ms), small enough that they and their sums fit the
log's 64-bit integers. Floats must be finite. A value past its bound is refused with the
field's path, never wrapped or clipped.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ScenarioError(ValueError):
    """A scenario file or preset that cannot be used, with what is wrong in words."""


# The largest values a scenario may hold. Ints that land in events must fit int64
# (2**63 - 1 ~ 9.2e18) together with the sums the views make of them: a catalogue of
# MAX_SKUS x MAX_STOCK units is 1e18, and MAX_VISITS orders of three lines at
# MAX_PRICE_CENTS are 6e17 cents. Stock is per SKU (it is added by one command); a single
# reservation takes far fewer units (the SKU decider's own per-command maximum).
MAX_USERS = 10_000_000  # sessions held by one run (the largest measured: 1,000,000)
MAX_VISITS = 20_000_000  # users x visits_per_user: the generator draws ~12 arrays of this length
MAX_SKUS = 1_000_000
MAX_STOCK = 10**12  # units per SKU
MAX_PRICE_CENTS = 10**10  # one unit's price (100 million in currency units)
MAX_CENTS = 10**15  # budgets and minimum spends
MAX_COUNT = 10**12  # coupon budgets in coupons
MAX_TEAMS = 10_000_000  # red-packet budget in pools
MAX_SPAN_S = 7 * 86_400  # the sale window, and every duration inside it (s)
MAX_LEAD_S = 3_600  # how long before midnight the window may open (s)
MAX_VALID_S = 366 * 86_400  # how long a coupon stays valid after the sale (s)
MAX_RATE_X = 10_000.0  # traffic multipliers
MAX_VIEWS = 1_000.0  # mean views per visit
MAX_ZIPF = 10.0
MIN_COMPRESSION = 0.01  # 100x slower than real time
MAX_COMPRESSION = 100_000.0  # a two-hour window in 72 ms; deadlines then shrink to 1 ms
MIN_SALE_START_MS = 86_400_000  # 1970-01-02: setup commands are stamped before the sale opens
MAX_SALE_START_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_SKU_SHARDS = 64  # the routing's partitions per kind (cluster.routing.ShardMap)
MAX_SEED = 2**63 - 1  # seeds are recorded as 64-bit ints; numpy takes no negative ones


def check_seed(seed: object) -> int:
    """Return `seed` if it is an int from 0 to 2**63 - 1, else raise `ScenarioError`."""
    if type(seed) is not int or not 0 <= seed <= MAX_SEED:
        raise ScenarioError(f"seed {seed!r}: a seed is a whole number from 0 to 2**63 - 1")
    return seed


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Traffic(_Model):
    """The arrival curve over the sale window: a flat lead before midnight (optional), a
    step at 00:00 to `start_x`, a climb to `plateau_x` at `peak_s`, then a decay."""

    window_s: int = Field(7200, gt=0, le=MAX_SPAN_S, description="Length of the simulated window "
                          "after midnight (s).")
    lead_s: int = Field(0, ge=0, le=MAX_LEAD_S, description="The window opens this many seconds "
                        "before midnight: visitors browse, claim and team up, but orders wait "
                        "for 00:00.")
    lead_x: float = Field(2.0, gt=0, le=MAX_RATE_X, description="Arrival rate before midnight, "
                          "as a multiple of the day's mean.")
    plateau_x: float = Field(12.0, gt=0, le=MAX_RATE_X, description="Rate at the peak, as a multiple of "
                             "the window's tail rate (the day's mean).")
    start_x: float = Field(8.0, gt=0, le=MAX_RATE_X, description="Rate at 00:00:00, same unit.")
    peak_s: int = Field(300, ge=0, le=MAX_SPAN_S, description="When the rate peaks (s after midnight).")
    half_life_s: int = Field(2400, gt=0, le=MAX_SPAN_S, description="After the peak the excess over the "
                             "mean rate halves every this many seconds.")

    @property
    def start_s(self) -> int:
        """When the window opens on the sale clock: `-lead_s` (0 without a lead)."""
        return -self.lead_s

    def rate(self, t_s: float) -> float:
        """Relative arrival rate at simulated second `t_s` (the tail tends to 1)."""
        if t_s < self.start_s or t_s > self.window_s:
            return 0.0
        if t_s < 0:
            return self.lead_x
        if t_s <= self.peak_s:
            f = t_s / self.peak_s if self.peak_s else 1.0
            return self.start_x + (self.plateau_x - self.start_x) * f
        return 1.0 + (self.plateau_x - 1.0) * 0.5 ** ((t_s - self.peak_s) / self.half_life_s)


class Skus(_Model):
    """The catalogue on sale: stock, prices, flash-sale tiers, limits, popularity."""

    count: int = Field(300, ge=1, le=MAX_SKUS)
    stock_min: int = Field(20, ge=1, le=MAX_STOCK)
    stock_max: int = Field(400, ge=1, le=MAX_STOCK)
    price_min_cents: int = Field(1_900, ge=1, le=MAX_PRICE_CENTS)
    price_max_cents: int = Field(99_900, ge=1, le=MAX_PRICE_CENTS)
    flash_share: float = Field(0.3, ge=0, le=1, description="Share of SKUs with a flash tier.")
    flash_units: int = Field(20, ge=1, le=MAX_STOCK, description="Units sold at the flash price.")
    flash_discount: float = Field(0.5, gt=0, lt=1, description="Flash price = price x (1 - this).")
    per_user_limit: int = Field(2, ge=0, le=MAX_STOCK, description="0: no limit.")
    zipf: float = Field(1.0, ge=0, le=MAX_ZIPF, description="Popularity exponent.")

    @model_validator(mode="after")
    def _ranges(self) -> Skus:
        if self.stock_max < self.stock_min or self.price_max_cents < self.price_min_cents:
            raise ValueError("stock_max/price_max_cents must be >= stock_min/price_min_cents")
        return self


class Funnel(_Model):
    """What a visit does: views, carts, orders, and how payments come back."""

    views_per_visit: float = Field(5.0, gt=0, le=MAX_VIEWS)
    view_to_cart: float = Field(0.06, ge=0, le=1)
    cart_to_order: float = Field(0.30, ge=0, le=1)
    browse_s: float = Field(40.0, ge=0, le=MAX_SPAN_S, description="Mean time from arrival to order (s).")
    payment_success: float = Field(0.995, ge=0, le=1)
    payment_never_returns: float = Field(0.002, ge=0, le=1)
    payment_delay_s: float = Field(20.0, ge=0, le=MAX_SPAN_S, description="Mean time to the callback (s).")
    payment_window_s: int = Field(900, gt=0, le=MAX_SPAN_S, description="Time to pay before the order "
                                  "expires and its holds are released (s).")

    @model_validator(mode="after")
    def _payments(self) -> Funnel:
        if self.payment_success + self.payment_never_returns > 1:
            raise ValueError("payment_success + payment_never_returns must be <= 1")
        return self


class Campaign(_Model):
    """A coupon campaign: its terms, budget, and how many visitors claim one."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    value_cents: int = Field(gt=0, le=MAX_CENTS)
    min_spend_cents: int = Field(0, ge=0, le=MAX_CENTS)
    budget_coupons: int = Field(0, ge=0, le=MAX_COUNT, description="0: no limit.")
    budget_cents: int = Field(0, ge=0, le=MAX_CENTS, description="0: no limit.")
    claim_rate: float = Field(0.0, ge=0, le=1, description="Share of visits that claim one.")
    valid_s: int = Field(86_400, gt=0, le=MAX_VALID_S)

    @model_validator(mode="after")
    def _budget(self) -> Campaign:
        if not (self.budget_coupons or self.budget_cents):
            raise ValueError(f"campaign {self.name!r} needs a budget: budget_coupons or "
                             "budget_cents > 0")
        return self


class TeamUp(_Model):
    """Team-up red packets: a leader opens a team, friends join from the shared link."""

    campaign: str = Field("redpacket", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    create_rate: float = Field(0.02, ge=0, le=1, description="Share of visits that open a team.")
    join_rate: float = Field(0.05, ge=0, le=1, description="Share of visits that join an "
                             "open team from a shared link.")
    size: int = Field(3, ge=2, le=10)
    pool_cents: int = Field(1_000, gt=0, le=MAX_PRICE_CENTS)
    min_share_cents: int = Field(50, ge=1, le=MAX_PRICE_CENTS)
    expires_s: int = Field(1_800, gt=0, le=MAX_SPAN_S)
    budget_teams: int = Field(400, ge=1, le=MAX_TEAMS, description="The red-packet campaign's budget, in "
                              "pools: teams opened past it are refused.")

    @model_validator(mode="after")
    def _pool(self) -> TeamUp:
        if self.min_share_cents * self.size > self.pool_cents:
            raise ValueError("pool_cents must cover size x min_share_cents")
        return self


class Referrals(_Model):
    """Sharing: who shares a link, and how many arrivals come through one."""

    share_rate: float = Field(0.10, ge=0, le=1, description="Share of visitors who share a link.")
    shared_arrival_rate: float = Field(0.15, ge=0, le=1, description="Share of arrivals "
                                       "that come through a shared link.")
    utm_sources: dict[str, Annotated[float, Field(ge=0, le=MAX_RATE_X)]] = Field(
        default_factory=lambda: {"app": 0.55, "search": 0.2, "ads": 0.15, "push": 0.1},
        description="Relative weights of the UTM sources of arrivals not brought by a link.")

    @model_validator(mode="after")
    def _weights(self) -> Referrals:
        if self.utm_sources and not sum(self.utm_sources.values()) > 0:
            raise ValueError("utm_sources: at least one weight must be > 0")
        return self


class Behaviour(_Model):
    """Browsing recorded as events (`sessions.behaviour_recorded`): each view and cart."""

    record: bool = Field(False, description="Record every view and add-to-cart as an event "
                         "(one command each; off by default: it adds ~views_per_visit events "
                         "per visit to the log).")
    categories: int = Field(20, ge=1, le=MAX_SKUS, description="SKU P<i> is in category C<i mod this>.")
    coupon_trigger: bool = Field(False, description="In-process engine: push a coupon (through "
                                 "the 24-hour frequency cap) to a user who viewed "
                                 "trigger_min_products products of one category in 5 minutes "
                                 "without ordering (simulator.triggers).")
    trigger_min_products: int = Field(5, ge=1, le=1_000)


class Experiment(_Model):
    """An A/B test the run defines and plays, with a true effect users follow. The defaults
    are the seed article's: a countdown converting 17.3 % better than a static banner."""

    name: str = Field("countdown", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    variants: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
                   Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=lambda: {"static": 1, "countdown": 1},
        description="Variant -> weight; the first is the control.")
    salt: str = Field("", max_length=64, description="Assignment salt (default: the name).")
    conversion: str = Field("order_paid", pattern=r"^(order_paid|order_placed)$")
    true_lift: dict[str, Annotated[float, Field(ge=-1, le=100)]] = Field(
        default_factory=lambda: {"countdown": 0.173},
        description="Variant -> true relative lift of its conversion over the control's.")
    planned_per_variant: int = Field(0, ge=0, le=MAX_USERS)

    @model_validator(mode="after")
    def _variants(self) -> Experiment:
        if len(self.variants) < 2:
            raise ValueError(f"experiment {self.name!r} needs at least two variants")
        unknown = set(self.true_lift) - set(self.variants)
        if unknown:
            raise ValueError(f"experiment {self.name!r}: true_lift names no variant {sorted(unknown)}")
        return self


class Members(_Model):
    """Members (docs/MEMBERS.md, simulator/members.py): imported order history, RFM tiers,
    points (earned, redeemed at checkout, expired), the invoice choice, a presale before
    midnight, and price drops after the sale refunded by price protection. The in-process
    engine plays them; off (absent) in every preset but `members`."""

    history_share: float = Field(0.6, ge=0, le=1, description="Share of users with imported "
                                 "order history.")
    history_orders_max: int = Field(12, ge=1, le=1_000, description="A user with history has "
                                    "1..this many past orders.")
    history_days: int = Field(730, ge=2, le=3_650, description="Past orders fall this many "
                              "days (at most) before the sale; older than `points_valid_days`, "
                              "their points have lapsed.")
    history_amount_min_cents: int = Field(2_000, ge=1, le=MAX_PRICE_CENTS)
    history_amount_max_cents: int = Field(150_000, ge=1, le=MAX_PRICE_CENTS)
    tier_rule: str = Field("diamond=13,gold=10,silver=7", pattern=r"^[a-z0-9=,]{0,64}$",
                           description="The RFM tier rule (projections/rfm.py), applied "
                           "as of the day before the sale.")
    protection_days: dict[str, Annotated[int, Field(ge=0, le=3_650)]] = Field(
        default_factory=lambda: {"diamond": 365, "gold": 30, "silver": 7},
        description="Price-protection period per tier (days); a tier left out has none.")
    points_per_yuan: int = Field(1, ge=0, le=1_000)
    points_valid_days: int = Field(365, ge=1, le=3_650)
    cents_per_point: int = Field(1, ge=1, le=10_000, description="What a point takes off "
                                 "at checkout (1: 100 points = 1 yuan).")
    invoice_electronic: float = Field(0.45, ge=0, le=1, description="Share of orders asking "
                                      "for an e-invoice (double points).")
    invoice_paper: float = Field(0.2, ge=0, le=1)
    redeem_share: float = Field(0.35, ge=0, le=1, description="Share of orders by a member "
                                "with points that redeem some.")
    redeem_max_share: float = Field(0.3, ge=0, le=1, description="Points redeemed take at "
                                    "most this share of the order's lowest possible total.")
    presales: int = Field(3, ge=0, le=1_000, description="Presale SKUs, each "
                         "stocked with presale_units units on the sku kind.")
    presale_units: int = Field(300, ge=1, le=MAX_STOCK)
    presale_deposits: int = Field(120, ge=0, le=MAX_USERS, description="Deposits per presale "
                                  "(1 or 2 units each, at most the units), paid over the "
                                  "`deposit_days` before midnight.")
    deposit_days: int = Field(10, ge=1, le=365)
    deposit_cents: int = Field(5_000, ge=1, le=MAX_PRICE_CENTS)
    deposit_counts_as_cents: int = Field(15_000, ge=1, le=MAX_PRICE_CENTS)
    presale_price_cents: int = Field(39_900, ge=1, le=MAX_PRICE_CENTS)
    balance_window_s: int = Field(3_600, gt=0, le=MAX_SPAN_S, description="The balance "
                                  "window opens at midnight and lasts this long (sale clock).")
    balance_rate: float = Field(0.85, ge=0, le=1, description="Share of deposits paid through; "
                                "the rest are forfeited when the window closes.")
    drop_share: float = Field(0.25, ge=0, le=1, description="Share of SKUs whose price drops "
                              "after the sale.")
    drop_min: float = Field(0.05, gt=0, lt=1, description="A drop takes this much off the "
                            "list price at least ...")
    drop_max: float = Field(0.4, gt=0, lt=1, description="... and at most this much.")
    drop_days_max: int = Field(60, ge=1, le=3_650, description="Drops come 1..this many days "
                               "after the sale.")

    @model_validator(mode="after")
    def _members(self) -> Members:
        if self.history_amount_max_cents < self.history_amount_min_cents:
            raise ValueError("history_amount_max_cents must be >= history_amount_min_cents")
        if self.invoice_electronic + self.invoice_paper > 1:
            raise ValueError("invoice_electronic + invoice_paper must be <= 1")
        if self.drop_max < self.drop_min:
            raise ValueError("drop_max must be >= drop_min")
        if not self.deposit_cents <= self.deposit_counts_as_cents <= self.presale_price_cents:
            raise ValueError("deposit_cents <= deposit_counts_as_cents <= presale_price_cents")
        unknown = set(self.protection_days) - {"diamond", "gold", "silver", "regular"}
        if unknown:
            raise ValueError(f"protection_days names no tier {sorted(unknown)}")
        from saleday.projections.rfm import TierRule, TierRuleError

        try:
            TierRule.parse(self.tier_rule)
        except TierRuleError as exc:
            raise ValueError(str(exc)) from None
        return self


class Scenario(_Model):
    """A simulated sale day. `saleday simulate --scenario FILE|PRESET` runs one."""

    name: str = "double11"
    description: str = ""
    users: int = Field(20_000, ge=1, le=MAX_USERS)
    visits_per_user: float = Field(1.25, gt=0, le=MAX_VISITS)
    sale_start_ms: int = Field(1_794_326_400_000, ge=MIN_SALE_START_MS, le=MAX_SALE_START_MS, description="Midnight of the sale "
                               "on the simulated clock (epoch ms; default 2026-11-11 00:00 "
                               "Beijing time).")
    compression: float = Field(120.0, ge=MIN_COMPRESSION, le=MAX_COMPRESSION, description="Simulated seconds per system second.")
    traffic: Traffic = Traffic()
    skus: Skus = Skus()
    funnel: Funnel = Funnel()
    campaigns: tuple[Campaign, ...] = (
        Campaign(name="d11-full-reduction", value_cents=3_000, min_spend_cents=20_000,
                 budget_coupons=5_000, claim_rate=0.25),
    )
    team_up: TeamUp = TeamUp()
    referrals: Referrals = Referrals()
    sku_shards: int = Field(2, ge=1, le=MAX_SKU_SHARDS)
    behaviour: Behaviour = Behaviour()
    experiments: tuple[Experiment, ...] = ()
    members: Members | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if len({e.name for e in self.experiments}) != len(self.experiments):
            raise ValueError("experiment names must be unique")
        names = [c.name for c in self.campaigns]
        if len(set(names)) != len(names):
            raise ValueError("campaign names must be unique")
        if self.visits > MAX_VISITS:
            raise ValueError(f"users x visits_per_user is {self.visits:,} visits; at most "
                             f"{MAX_VISITS:,} fit one run")
        if self.members is not None and self.members.balance_window_s > self.traffic.window_s:
            raise ValueError("members.balance_window_s must end within traffic.window_s")
        if self.team_up.create_rate > 0 and self.team_up.campaign in names:
            raise ValueError(f"team_up.campaign {self.team_up.campaign!r} is also a coupon "
                             "campaign; give the red-packet campaign its own name")
        return self

    @property
    def visits(self) -> int:
        return max(1, math.ceil(self.users * self.visits_per_user))

    def with_overrides(self, **changes: Any) -> Scenario:
        """A copy with top-level fields replaced (None values are ignored), re-validated."""
        data = self.model_dump()
        changed = {k: v for k, v in changes.items() if v is not None}
        data.update(changed)
        try:
            return Scenario.model_validate(data)
        except ValidationError as exc:
            where = f"{self.name} with " + ", ".join(f"{k}={v!r}" for k, v in changed.items())
            raise ScenarioError(_explain(exc, where)) from None


PRESETS: dict[str, dict[str, Any]] = {
    "countdown-ab": {
        "description": "The seed's A/B test: a countdown banner against a static one, the "
                       "countdown converting 17.3 % better; views recorded as events; real time "
                       "(compression 1), so event-time windows are the sale's own minutes.",
        "users": 20_000,
        "compression": 1.0,
        "behaviour": {"record": True, "coupon_trigger": True, "trigger_min_products": 3},
        "experiments": [{}],
    },
    "double11": {
        "description": "11.11 midnight: five minutes of early visitors (2x the mean rate), "
                       "a step at 00:00 to ~8x rising to ~12x at 00:05, decaying over two "
                       "hours; coupons, team-ups and referrals.",
        "traffic": {"lead_s": 300, "lead_x": 2.0},
    },
    "members": {
        "description": "11.11 with members: 60 % of users bring order history (tiers by "
                       "RFM), three presales take deposits in the ten days before midnight "
                       "and balances in the first hour, orders choose an invoice (e-invoice: "
                       "double points) and redeem points, and a quarter of the SKUs drop "
                       "in price in the 60 days after (refunded by price protection).",
        "traffic": {"lead_s": 300, "lead_x": 2.0},
        "members": {},
    },
    "flash-half-price": {
        "description": "A flash sale: 50 SKUs, the first 30 units of each at half price, "
                       "demand far above stock, sold out in minutes.",
        "users": 20_000,
        "traffic": {"window_s": 1800, "plateau_x": 15.0, "start_x": 14.0, "peak_s": 60,
                    "half_life_s": 600},
        "skus": {"count": 50, "stock_min": 30, "stock_max": 120, "flash_share": 1.0,
                 "flash_units": 30, "flash_discount": 0.5, "per_user_limit": 1, "zipf": 1.1},
        "funnel": {"view_to_cart": 0.15, "cart_to_order": 0.5, "browse_s": 15.0},
        "compression": 30.0,
    },
    "team-up": {
        "description": "Team-up red packets: many teams of three, joins through shared "
                       "links, shares paid out as coupons; a lighter shopping load.",
        "users": 15_000,
        "team_up": {"create_rate": 0.08, "join_rate": 0.25, "size": 3, "pool_cents": 1_200,
                    "min_share_cents": 100, "expires_s": 1_200},
        "referrals": {"share_rate": 0.3, "shared_arrival_rate": 0.35},
    },
}


def preset(name: str) -> Scenario:
    if name not in PRESETS:
        raise ScenarioError(f"no preset {name!r}; presets: {', '.join(sorted(PRESETS))}")
    return Scenario.model_validate({"name": name, **PRESETS[name]})


def load(spec: str | Path) -> Scenario:
    """A preset name, or a .yaml/.yml/.toml/.json file describing a scenario."""
    if isinstance(spec, str) and spec in PRESETS:
        return preset(spec)
    path = Path(spec)
    if not path.exists():
        raise ScenarioError(f"{spec!r} is neither a preset ({', '.join(sorted(PRESETS))}) "
                            "nor an existing file")
    text = path.read_text(encoding="utf-8")
    try:
        match path.suffix.lower():
            case ".yaml" | ".yml":
                data = yaml.safe_load(text)
            case ".toml":
                data = tomllib.loads(text)
            case ".json":
                data = json.loads(text)
            case other:
                raise ScenarioError(f"{path}: unknown scenario format {other!r} "
                                    "(use .yaml, .toml or .json)")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping of fields, not {type(data).__name__}")
    base = data.pop("preset", None)
    if base is not None:
        merged = _merge(PRESETS.get(str(base)) or _unknown_preset(base), data)
        data = {"name": data.get("name", str(base)), **merged}
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_explain(exc, str(path))) from None


def _unknown_preset(name: object) -> dict[str, Any]:
    raise ScenarioError(f"no preset {name!r}; presets: {', '.join(sorted(PRESETS))}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def _explain(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid scenario"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)
