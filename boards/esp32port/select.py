# ESP32 port stand-in: select. The real uselect underneath (sockets are the host's, so a command
# from the broker arrives for real), but a poll's timeout passes in virtual time (esp32world.wait):
# it waits at most a sliver of real time, so a meter idling on its MQTT socket between ticks runs
# days in seconds, and an event that is waiting comes back after one virtual millisecond.
from micropython import const
import uselect as _s
import esp32world as _w
from uselect import POLLIN, POLLOUT, POLLERR, POLLHUP

_SLICE = const(1000)  # an endless poll waits in slices of this many virtual ms


class _Poll:
    def __init__(self):
        self._p = _s.poll()

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        self._p.register(obj, eventmask)

    def unregister(self, obj):
        self._p.unregister(obj)

    def modify(self, obj, eventmask):
        self._p.modify(obj, eventmask)

    def poll(self, timeout=-1):
        if timeout == 0:
            return self._p.poll(0)
        if timeout > 0:
            return _w.wait(timeout, self._p) or []
        while True:
            r = _w.wait(_SLICE, self._p)
            if r:
                return r

    def ipoll(self, timeout=-1, flags=0):
        return iter(self.poll(timeout))


def poll():
    return _Poll()


def select(rlist, wlist, xlist, timeout=None):
    p = _Poll()
    for o in rlist:
        p.register(o, POLLIN)
    for o in wlist:
        p.register(o, POLLOUT)
    r = p.poll(-1 if timeout is None else int(timeout * 1000))
    return ([e[0] for e in r if e[1] & POLLIN], [e[0] for e in r if e[1] & POLLOUT], [])
