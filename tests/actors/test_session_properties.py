"""Properties of the session decider over any sequence of commands, checked from its events.

One user's wallet, orders, pushes, sessions and locations are driven by random commands
while time moves forward: a coupon is redeemed at most once and never after it lapsed, no
coupon is locked by two orders at once, a lock is released by its `until`, a (coupon,
order) whose lock was voided (cancel before try) never becomes locked, replaying the
decided events rebuilds the state, and every event is loggable. Many users started in
random order with random inviters form a referral graph without cycles.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from saleday.actors.decider import Rejection, fold
from saleday.actors.session import (
    CouponLapsed,
    CouponLocked,
    CouponLockVoided,
    CouponReceived,
    CouponRedeemed,
    CouponUnlocked,
    ExpireCoupons,
    LockCoupon,
    OrderStatusChanged,
    PushDelivered,
    ReceiveCoupon,
    RecordPush,
    RedeemCoupon,
    ReferralAttributed,
    ReportLocation,
    StartSession,
    StoreVisited,
    TrackOrder,
    UnlockCoupon,
    decide,
    evolve,
    session_decider,
)
from saleday.events.chain import canonical
from saleday.events.registry import registry

USER = "u0"
COUPONS = st.sampled_from(("c1", "c2", "c3"))
ORDERS = st.sampled_from(("o1", "o2", "o3"))
STATUSES = st.sampled_from(("placed", "paid", "cancelled", "refunded"))
STORES = (("st1", 31_230_000, 121_470_000, "live", 500),
          ("st2", 31_231_000, 121_470_000, "live", 500),
          ("st3", 39_900_000, 116_400_000, "live", 2_000))
ALLOWED = {("", "placed"), ("placed", "paid"), ("placed", "cancelled"), ("paid", "refunded"),
           ("cancelled", "refunded")}


def assert_loggable(events: list) -> None:
    """Every event encodes through the registry into a canonical, msgpack-native payload."""
    for event in events:
        name, _, data = registry.encode(event)
        canonical(data, name)


class WalletMachine(RuleBasedStateMachine):
    """One user's commands in random order, with time moving forward."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000
        self.state = session_decider.initial(USER)
        self.events: list = []
        self.redeemed: Counter[str] = Counter()
        self.lapsed: set[str] = set()
        self.valid_until: dict[str, int] = {}
        self.locked_by: dict[str, str] = {}
        self.lock_until: dict[str, int] = {}
        self.voided: set[tuple[str, str]] = set()
        self.ever_locked: set[tuple[str, str]] = set()
        self.order_status: dict[str, str] = {}
        self.deliveries: list[int] = []

    def run(self, command) -> list | Rejection:
        """Decide `command`, check each event against what the log says so far, and fold it."""
        result = decide(command, self.state)
        if isinstance(result, Rejection):
            assert type(result) is not Rejection
            return result
        assert_loggable(result)
        for event in result:
            self.check(command, event)
            self.state = evolve(self.state, event)
            self.events.append(event)
        return result

    def check(self, command, event) -> None:
        match event:
            case CouponReceived():
                self.valid_until[event.coupon_id] = event.valid_until
            case CouponLocked():
                assert event.coupon_id not in self.lapsed, "locked after lapse"
                assert command.now < self.valid_until[event.coupon_id], "locked after validity"
                assert event.coupon_id not in self.locked_by, "locked by two orders"
                assert (event.coupon_id, event.order_id) not in self.voided, "voided, then locked"
                assert (event.coupon_id, event.order_id) not in self.ever_locked, "locked twice"
                assert event.until > command.now
                self.locked_by[event.coupon_id] = event.order_id
                self.lock_until[event.coupon_id] = event.until
                self.ever_locked.add((event.coupon_id, event.order_id))
            case CouponUnlocked():
                assert self.locked_by.pop(event.coupon_id) == event.order_id
                if event.reason == "lock_expired":
                    assert self.lock_until[event.coupon_id] <= command.now
                else:
                    assert event.reason == "cancelled" and type(command) is UnlockCoupon
            case CouponLockVoided():
                pair = (event.coupon_id, event.order_id)
                assert pair not in self.voided and pair not in self.ever_locked
                self.voided.add(pair)
            case CouponRedeemed():
                assert event.coupon_id not in self.lapsed, "redeemed after lapse"
                assert self.locked_by.pop(event.coupon_id) == event.order_id
                self.redeemed[event.coupon_id] += 1
            case CouponLapsed():
                assert event.coupon_id not in self.locked_by, "a locked coupon lapsed"
                assert not self.redeemed[event.coupon_id]
                assert self.valid_until[event.coupon_id] <= command.now
                self.lapsed.add(event.coupon_id)
            case OrderStatusChanged():
                current = self.order_status.get(event.order_id, "")
                assert (current, event.status) in ALLOWED
                self.order_status[event.order_id] = event.status
            case PushDelivered():
                start = event.at - command.window_ms
                assert sum(1 for t in self.deliveries if start < t <= event.at) < command.cap
                self.deliveries.append(event.at)

    @initialize(ttls=st.lists(st.integers(1, 3_000), min_size=3, max_size=3))
    def fill_the_wallet(self, ttls: list[int]) -> None:
        """Most runs start with coupons in the wallet, so locks and redemptions get going."""
        for cid, ttl in zip(("c1", "c2", "c3"), ttls):
            self.receive(cid, ttl, 500, 1_000)

    @rule(ms=st.integers(0, 300))
    def tick(self, ms: int) -> None:
        self.now += ms

    @rule(cid=COUPONS, ttl=st.integers(-50, 3_000), value=st.integers(0, 1_000),
          min_spend=st.sampled_from((0, 1_000, 5_000)))
    def receive(self, cid: str, ttl: int, value: int, min_spend: int) -> None:
        self.run(ReceiveCoupon(user=USER, coupon_id=cid, campaign="d11", value_cents=value,
                               min_spend_cents=min_spend, valid_until=self.now + ttl,
                               now=self.now))

    @rule(cid=COUPONS, order=ORDERS, total=st.sampled_from((0, 999, 1_000, 6_000)),
          ttl=st.integers(1, 2_000))
    def lock(self, cid: str, order: str, total: int, ttl: int) -> None:
        self.run(LockCoupon(user=USER, coupon_id=cid, order_id=order, order_total_cents=total,
                            until=self.now + ttl, now=self.now))

    @rule(cid=COUPONS, order=ORDERS)
    def redeem(self, cid: str, order: str) -> None:
        self.run(RedeemCoupon(user=USER, coupon_id=cid, order_id=order, now=self.now))

    @precondition(lambda self: self.locked_by)
    @rule(data=st.data(), redeem=st.booleans())
    def settle_a_locked_coupon(self, data: st.DataObject, redeem: bool) -> None:
        """The checkout holding a coupon ends: paid (redeem) or given up (unlock)."""
        cid = data.draw(st.sampled_from(sorted(self.locked_by)))
        command = RedeemCoupon if redeem else UnlockCoupon
        self.run(command(user=USER, coupon_id=cid, order_id=self.locked_by[cid], now=self.now))

    @rule(cid=COUPONS, order=ORDERS)
    def unlock(self, cid: str, order: str) -> None:
        self.run(UnlockCoupon(user=USER, coupon_id=cid, order_id=order, now=self.now))

    @rule()
    def expire_due(self) -> None:
        self.run(ExpireCoupons(user=USER, now=self.now))
        assert all(c.valid_until > self.now for c in self.state.coupons.values()
                   if c.status == "held"), "a due coupon survived its expiry"
        assert all(c.until > self.now for c in self.state.coupons.values()
                   if c.status == "locked"), "a due lock survived its expiry"

    @rule(order=ORDERS, status=STATUSES, amount=st.integers(0, 10_000))
    def track(self, order: str, status: str, amount: int) -> None:
        self.run(TrackOrder(user=USER, order_id=order, status=status, amount_cents=amount,
                            now=self.now))

    @rule(pid=st.sampled_from(("p1", "p2", "p3", "p4", "p5", "p6")),
          kind=st.sampled_from(("coupon", "ad")), cap=st.integers(0, 3),
          window=st.sampled_from((1, 500, 2_000)))
    def push(self, pid: str, kind: str, cap: int, window: int) -> None:
        self.run(RecordPush(user=USER, push_id=pid, kind=kind, now=self.now, cap=cap,
                            window_ms=window))

    @rule(sid=st.sampled_from(("s1", "s2", "s3")), inviter=st.sampled_from(("", USER, "u9")),
          since=st.integers(0, 3_000))
    def start(self, sid: str, inviter: str, since: int) -> None:
        self.run(StartSession(user=USER, session_id=sid, utm_source="wechat", utm_medium="",
                              utm_campaign="", now=self.now, inviter=inviter,
                              inviter_since=since))

    @rule(lat=st.integers(31_225_000, 31_236_000))
    def locate(self, lat: int) -> None:
        self.run(ReportLocation(user=USER, lat_e6=lat, lon_e6=121_470_000, now=self.now,
                                stores=STORES))

    @invariant()
    def redeemed_at_most_once(self) -> None:
        assert all(n <= 1 for n in self.redeemed.values())
        assert not (set(self.redeemed) & self.lapsed)

    @invariant()
    def visits_and_attribution_happen_once(self) -> None:
        visits = Counter(e.store_id for e in self.events if type(e) is StoreVisited)
        assert all(n == 1 for n in visits.values())
        assert sum(type(e) is ReferralAttributed for e in self.events) <= 1

    @invariant()
    def replaying_the_log_gives_the_same_state(self) -> None:
        assert fold(session_decider, USER, self.events) == self.state


WalletMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestWalletProperties = WalletMachine.TestCase


USERS = ("u0", "u1", "u2", "u3", "u4", "u5")
TOUCHES = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(("",) + USERS),
                             st.integers(1, 40)), max_size=40)
"""(user, inviter, now) of sessions started in any order; times may repeat or go back."""


@settings(max_examples=300, deadline=None)
@given(touches=TOUCHES)
def test_the_referral_graph_has_no_cycle_and_no_self_loop(touches):
    """Users started in any order with any inviters form an acyclic graph without self-loops."""
    states = {}
    edges: dict[str, str] = {}
    for i, (user, inviter, now) in enumerate(touches):
        state = states.get(user) or session_decider.initial(user)
        inviter_state = states.get(inviter)
        since = inviter_state.first_seen if inviter_state is not None else 0
        result = decide(StartSession(user=user, session_id=f"s{i}", utm_source="", utm_medium="",
                                     utm_campaign="", now=now, inviter=inviter,
                                     inviter_since=since), state)
        assert not isinstance(result, Rejection)
        assert_loggable(result)
        for event in result:
            if type(event) is ReferralAttributed:
                assert event.user not in edges, "attributed twice"
                edges[event.user] = event.inviter
            state = evolve(state, event)
        states[user] = state
    for user, inviter in edges.items():
        assert user != inviter
        assert states[inviter].first_seen < states[user].first_seen
        seen = {user}
        while inviter in edges:  # follow the (single) inviter chain upwards
            assert inviter not in seen, "cycle"
            seen.add(inviter)
            inviter = edges[inviter]
        assert inviter not in seen, "cycle"
    started = defaultdict(list)
    for user, _, now in touches:
        started[user].append(now)
    assert {u: s.first_seen for u, s in states.items()} == {u: t[0] for u, t in started.items()}
