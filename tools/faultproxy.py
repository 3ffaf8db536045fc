"""A TCP proxy that can break the link on purpose, for tests.

    with FaultProxy(("127.0.0.1", broker_port)) as p:   # listens on p.port
        ...                        # bytes flow both ways
        p.blackhole()              # half-open: both sockets stay open, nothing is forwarded
        p.heal()                   # forward again (new connections only see a working path)
        p.cut()                    # close every connection (RST/FIN) right now
        p.refuse(True)             # accept and immediately close new connections

Runs in threads; usable from pytest or as `python tools/faultproxy.py LISTEN_PORT HOST:PORT`.
"""
import select
import socket
import sys
import threading
import time


class FaultProxy:
    def __init__(self, target, host="127.0.0.1", port=0):
        self.target = target
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self._lsock.listen(8)
        self.host, self.port = self._lsock.getsockname()
        self._lock = threading.Lock()
        self._pairs = []
        self._forward = True
        self._refuse = False
        self._closed = False
        self.accepted = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._t = threading.Thread(target=self._accept_loop, daemon=True)
        self._t.start()

    # -- faults -----------------------------------------------------------------
    def blackhole(self):
        """Stop forwarding in both directions without closing anything (a half-open link)."""
        self._forward = False

    def heal(self):
        """Forward again; connections black-holed so far are cut (their streams are broken)."""
        self.cut()
        self._forward = True

    def refuse(self, flag=True):
        self._refuse = flag

    def cut(self):
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self._closed = True
        try:
            self._lsock.close()
        except OSError:
            pass
        self.cut()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- plumbing ---------------------------------------------------------------
    def _accept_loop(self):
        while not self._closed:
            try:
                c, _ = self._lsock.accept()
            except OSError:
                return
            self.accepted += 1
            if self._refuse:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._pairs.append((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, c, u):
        socks = [c, u]
        while not self._closed:
            try:
                r, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                return
            if not self._forward:
                time.sleep(0.02)  # hold everything: the peers see silence, not a close
                continue
            for s in r:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(c, u)
                    return
                other = u if s is c else c
                try:
                    other.sendall(data)
                except OSError:
                    self._drop(c, u)
                    return
                if s is c:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)

    def _drop(self, c, u):
        with self._lock:
            if (c, u) in self._pairs:
                self._pairs.remove((c, u))
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass


def main(argv):
    if len(argv) != 2 or ":" not in argv[1]:
        print("usage: faultproxy.py LISTEN_PORT HOST:PORT", file=sys.stderr)
        return 2
    host, _, port = argv[1].rpartition(":")
    p = FaultProxy((host, int(port)), port=int(argv[0]))
    print("forwarding %s:%d -> %s" % (p.host, p.port, argv[1]))
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
