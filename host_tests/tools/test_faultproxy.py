"""tools/faultproxy.py: forwards, black-holes without closing, cuts, refuses."""
import socket
import threading

import pytest

from faultproxy import FaultProxy


def _closed(s):
    try:
        return s.recv(10) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def echo():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(100), b"")],
                             daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


def test_forward_blackhole_heal_cut_refuse(echo):
    with FaultProxy(echo) as p:
        c = socket.create_connection((p.host, p.port), timeout=1)
        c.sendall(b"hi")
        assert c.recv(10) == b"hi"
        p.blackhole()
        c.sendall(b"lost")
        with pytest.raises(socket.timeout):
            c.recv(10)  # silence, not a close: the half-open case
        p.heal()  # cuts the broken stream (unread data makes it a reset)
        assert _closed(c)
        c2 = socket.create_connection((p.host, p.port), timeout=1)
        c2.sendall(b"again")
        assert c2.recv(10) == b"again"
        p.cut()
        assert _closed(c2)
        p.refuse()
        c3 = socket.create_connection((p.host, p.port), timeout=1)
        assert _closed(c3)
        assert p.accepted == 3 and p.bytes_up >= 7
