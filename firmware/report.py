# Telemetry policy: what the meter reports and when.
#   tele  every telemetry_s (default 900 s), and early by exception: a power step of
#         report_step_w or more, or an event worth telling at once (low credit, relay change,
#         reverse energy / tamper) -- but never more often than report_min_s.
#   lp    load profile: one record per lp_s interval (default 900 s, aligned to UTC: the meter
#         epoch is a UTC midnight, so meter seconds align the same way). Since protocol revision 5
#         the telemetry sent at the interval's end carries it: "lp" marks the message, its
#         registers are the interval's closing readings (docs/protocol.md 9), and it counts as the
#         periodic report: one message where there were two. A board config "lp_topic": true
#         sends lp messages as before, for a backend not yet on revision 5.
#   (billing snapshots go out from firmware/billing.py at local midnight, on the snap topic)
# step() runs every tick and allocates nothing unless a message is due.


from micropython import const

# With the load profile folded into telemetry, the interval ends pace the periodic report; the
# timer waits this much longer, so a clock that runs a little ahead of the RTC does not add a
# report just before each interval's end.
_FOLD_GRACE_MS = const(30000)


class Reporter:
    def __init__(self, m, cfg):
        self._m = m
        self.tele_ms = cfg.get("telemetry_s", 900) * 1000
        self.lp_s = cfg.get("lp_s", 900)
        self.step_w = cfg.get("report_step_w", 1000)
        self.min_ms = cfg.get("report_min_s", 60) * 1000
        self.fold = not cfg.get("lp_topic", False)
        self._due_ms = self.tele_ms + (_FOLD_GRACE_MS if self.fold else 0)
        self.exceptions = 0  # early reports sent
        self.start()

    def start(self):
        """Take the baselines from the (restored) meter state."""
        m = self._m
        self._last_tele = m.clock.ticks_ms()
        self._last_p = m.metering.p_w
        utc = m.clock.time()
        self._slot = utc // self.lp_s
        self._lp_e = m.metering.imp_wh
        self._lp_x = m.metering.exp_wh

    def step(self, now):
        m = self._m
        clock = m.clock
        sync = m.sync
        utc = clock.time()
        slot = utc // self.lp_s
        if slot != self._slot:
            self._slot = slot
            if self.fold:
                self._sent(now)
                sync.telemetry(m, slot * self.lp_s, self.lp_s)
                return
            mt = m.metering
            sync.load_profile(m, slot * self.lp_s, mt.imp_wh - self._lp_e, mt.exp_wh - self._lp_x)
            self._lp_e = mt.imp_wh
            self._lp_x = mt.exp_wh
        age = clock.ticks_diff(now, self._last_tele)
        due = age >= self._due_ms
        if not due and age >= self.min_ms:
            d = m.metering.p_w - self._last_p
            if sync.exception or d >= self.step_w or -d >= self.step_w:
                due = True
                self.exceptions += 1
        if due:
            self._sent(now)
            sync.telemetry(m, utc)

    def _sent(self, now):
        self._last_tele = now
        self._last_p = self._m.metering.p_w
        self._m.sync.exception = False
