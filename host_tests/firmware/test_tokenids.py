"""firmware/tokenids.py: the window of used token ids, against a plain model of the rule
(a token is taken once, in any order among the newest 64, never below the floor, at most 65 536
past the newest), and without allocating."""

WINDOW = r'''
import random, mptest, micropython
import tokenids as T
w = T.TokenIds()
mptest.eq(w.seen(1), (T.OK, None), "a fresh meter takes token 1")
mptest.eq(w.seen(0)[1], "malformed", "id 0")
mptest.eq(w.seen(1 << 31)[1], "malformed", "past 31 bits")
mptest.eq(w.seen(T.MAX_ADVANCE + 1), (T.REFUSED, "id_jump"), "a jump past the bound")
mptest.eq(w.seen(T.MAX_ADVANCE), (T.OK, None), "the bound itself")
w.remember(5)
w.remember(3)
mptest.eq([w.seen(i)[0] for i in range(1, 7)], [T.OK, T.OK, T.USED, T.OK, T.USED, T.OK], "3 and 5 used, the rest open")
w.remember(5 + T.SPAN)
mptest.eq(w.seen(6)[0], T.OK, "6: SPAN - 1 below the newest, never typed: still good")
mptest.eq(w.seen(5)[1], "stale_id", "5: SPAN below, out of the window")
mptest.eq(w.seen(4)[1], "stale_id", "4: below the window")
w.reset(100)
mptest.eq((w.seen(100)[1], w.seen(90)[1], w.seen(101)[0]), ("stale_id", "stale_id", T.OK), "a resync spends every id up to it")

# Random sequences against the model: every id taken once, whatever the order.
random.seed(7)
for run in range(20):
    w = T.TokenIds()
    used = set()
    top = floor = 0
    for _ in range(400):
        tid = random.randint(1, top + 80) if random.getrandbits(3) else random.randint(1, 1 << 17)
        if random.getrandbits(6) == 0:
            r = top + random.randint(0, 10)
            w.reset(r)
            top = floor = r
            continue
        if tid > top:
            want = T.OK if tid - top <= T.MAX_ADVANCE else T.REFUSED
        elif top - tid < T.SPAN and tid in used:
            want = T.USED
        elif top - tid >= T.SPAN or tid <= floor:
            want = T.REFUSED
        else:
            want = T.OK
        got = w.seen(tid)[0]
        if not mptest.eq(got, want, "run %d id %d (top %d floor %d)" % (run, tid, top, floor)):
            break
        if got == T.OK:
            w.remember(tid)
            used.add(tid)
            top = max(top, tid)

w = T.TokenIds()
w.remember(1)
def cycle():
    w.seen(w.top + 1)
    w.remember(w.top + 3)
    w.remember(w.top - 1)
    w.seen(w.top - 2)
mptest.allocates_nothing(cycle, 200, "checking and remembering token ids allocates nothing")
mptest.done()
'''


def test_token_ids_follow_the_rule_and_allocate_nothing(mpy):
    r = mpy(WINDOW).result
    assert r["ok"] and r["checks"] > 2000, r
