"""select stand-in (boards/esp32port/select.py): a poll's timeout passes in virtual time, at once,
unless the real socket has something to read, which comes back after a virtual millisecond."""

import mpbroker

USES_MICROPYTHON = True


def test_poll_lets_its_timeout_pass_virtually_and_returns_real_events_at_once(esp32):
    r = esp32("""
import mptest, time, select, socket
addr = socket.getaddrinfo("127.0.0.1", %d)[0][-1]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(addr)
srv.listen(1)
p = select.poll()
p.register(srv, select.POLLIN)
t0 = time.ticks_ms()
mptest.eq(p.poll(3600000), [], "nothing to read")
mptest.eq(time.ticks_diff(time.ticks_ms(), t0), 3600000, "an hour of virtual time went by")
c = socket.socket()
c.connect(addr)
t1 = time.ticks_ms()
ev = p.poll(3600000)
mptest.check(ev and ev[0][0] is srv and ev[0][1] & select.POLLIN, "the connection is there: %%r" %% (ev,))
mptest.eq(time.ticks_diff(time.ticks_ms(), t1), 1, "and a millisecond passed, not the hour")
mptest.done()
""" % mpbroker.free_port())
    assert r["ok"], r["failures"]
