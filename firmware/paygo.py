# OpenPAYGO Token on the meter (docs/tokens.md): a 9-digit code typed, or relayed by the backend,
# applied to the account through the same lockout, journal and commit as the meter's own tokens.
# The app builds this only when its config lists "openpaygo" among the token systems it takes.
# The count and the used counts live on the app (paygo_count, paygo_used: the hot record), so they
# are committed with the balance, and restored with it when a commit fails.
import account
import events
import openpaygo_token as opg
from hmac256 import HmacSha256
from token import CREDIT

_MAX_UNIT = 1000000


class PaygoTokens:
    """m: the app. The key is the board's own (`openpaygo_key`, 16 bytes, with `openpaygo_start`)
    for a device an operator provisioned, else derived from the meter key; the starting code then
    comes from the key by the standard's rule. cfg "openpaygo": {"unit_minor": minor units a
    token's value unit is worth (default 100)}."""

    def __init__(self, m, board, cfg):
        self._m = m
        key = getattr(board, "openpaygo_key", None)
        if key is None and board.key:
            key = HmacSha256(board.key).digest(b"pm-openpaygo-key-v1")[:16]
        self._dec = None
        if key is not None:
            start = getattr(board, "openpaygo_start", None)
            self._dec = opg.Decoder(key, opg.starting_code(key) if start is None else start)
        unit = cfg.get("openpaygo", {}).get("unit_minor", 100)
        if type(unit) is not int or not 0 < unit <= _MAX_UNIT:
            raise ValueError("openpaygo.unit_minor: whole minor units, 1 to 1000000")
        self.unit = unit

    def enter(self, digits, now):
        """(result name, token type, count, amount) for the journal, as the app's _token."""
        m = self._m
        tk = m.tokens
        if self._dec is None:
            return "no_key", CREDIT, 0, 0
        if tk.locked(now):
            return "locked", CREDIT, 0, 0
        if m.commands.lost:
            return "replay_lost", CREDIT, 0, 0  # the used counts went with the record
        d = self._dec
        d.count, d.used = m.paygo_count, m.paygo_used
        typ, val, n = d.check(digits)
        if typ is None:
            m.emit(events.TOPUP_REFUSED, 0)
            if val == "bad_mac":
                tk.failed(now)  # the one lockout, shared with the meter's own tokens
                if tk.locked(now):
                    m.emit(events.TOKEN_LOCKOUT, tk.lock_until - now)
            return val, CREDIT, n, 0
        tk.bad = 0
        if typ == opg.SYNC and n <= m.paygo_count:
            # The standard takes a Counter-Sync again (it only moves the count): one that moves
            # nothing is a replay here, answered as such.
            return "used", CREDIT, n, 0
        amt = 0
        if typ == opg.ADD:
            amt = val * self.unit
            if amt:
                r = m.account.topup(amt)
                if r != account.APPLIED:  # not remembered: it may be entered again later
                    m.emit(events.TOPUP_REFUSED, amt)
                    return ("refused_max_balance" if r == account.REFUSED_MAX_BALANCE else "bad_amount"), CREDIT, n, amt
                m.topups += 1
                m.emit(events.TOPUP_APPLIED, amt)
        elif typ == opg.SET:
            # Set-Time: the credit becomes the token's value (docs/tokens.md).
            amt = val * self.unit
            r = m.account.set_credit(amt)
            if r != account.APPLIED:
                m.emit(events.TOPUP_REFUSED, amt)
                return ("refused_max_balance" if r == account.REFUSED_MAX_BALANCE else "bad_amount"), CREDIT, n, amt
            m.topups += 1
            m.emit(events.TOPUP_APPLIED, amt)
        elif typ == opg.DISABLE:
            # Disable-PAYG: the device is paid off: power is kept whatever the credit (the relay's
            # persistent keep-power override; billing goes on as a record). The backend's
            # keep_power command can end it.
            m.relay.set_keep_power(True)
        d.remember(typ, val, n)
        m.paygo_count, m.paygo_used = d.count, d.used
        m._credit_rules()  # the relay follows the new credit, as after any top-up
        return "applied", CREDIT, n, amt
