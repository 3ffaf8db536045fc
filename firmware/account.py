# Prepaid credit account: balance in minor currency units and the low-credit levels.
from micropython import const
import events

OK = const(0)
LOW_1 = const(1)
LOW_2 = const(2)
EXHAUSTED = const(3)

# Top-up results (also the codes sent back to the backend).
APPLIED = const(0)
REFUSED_MAX_BALANCE = const(1)
REFUSED_AMOUNT = const(2)


class Account:
    def __init__(self, emit, low1=200, low2=50, hysteresis=20, max_balance=10000000):
        self._emit = emit
        self.low1 = low1
        self.low2 = low2
        self.hyst = hysteresis
        self.max_balance = max_balance
        self.balance = 0
        self.charged = 0  # money charged since manufacture
        self.topped_up = 0  # money credited since manufacture
        self.level = OK

    def debit(self, minor):
        if minor:
            self.balance -= minor
            self.charged += minor
            self._update_level()

    def topup(self, amount):
        """Credit `amount`; refused whole (never truncated) when it would pass the maximum balance."""
        if type(amount) is not int or amount <= 0:
            return REFUSED_AMOUNT
        if self.balance + amount > self.max_balance:
            return REFUSED_MAX_BALANCE
        self.balance += amount
        self.topped_up += amount
        self._update_level()
        return APPLIED

    def _update_level(self):
        b = self.balance
        if b <= 0:
            new = EXHAUSTED
        elif b <= self.low2:
            new = LOW_2
        elif b <= self.low1:
            new = LOW_1
        else:
            new = OK
        old = self.level
        if new > old:
            self.level = new
            self._emit((events.LOW_CREDIT_1, events.LOW_CREDIT_2, events.CREDIT_EXHAUSTED)[new - 1], b)
        elif new < old:
            # Hysteresis: only step back down when the balance is clearly above the threshold,
            # so a balance hovering at a level does not flood the backend with events.
            bound = (0, self.low1, self.low2, 0)[old]
            if b > bound + self.hyst or old == EXHAUSTED:
                self.level = new
                if old == EXHAUSTED:
                    self._emit(events.CREDIT_RESTORED, b)
