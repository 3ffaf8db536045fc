"""One TCP address in front of several brokers: a tiny load balancer for tests and the fleet.

    from tcpfront import TcpFront
    with TcpFront([("127.0.0.1", 31883), ("127.0.0.1", 31884)]) as f:   # listens on f.port
        connect_to(f.host, f.port)    # each new connection goes to the next target, round robin

* Every new connection is forwarded to the next target in turn. A target that refuses (its
  node is down, or not listening yet) is skipped; when every target refuses, the client's
  connection is closed at once, as a broker that is down would do.
* When either side closes, both are closed. A node that crashes therefore just closes the
  connections it carried, and the clients' reconnects land on the nodes that are left: what a
  real deployment's TCP load balancer does.
* Bytes are passed on unchanged (TCP_NODELAY on both legs); nothing looks inside them.
* `peak_accepts_per_s()` is the most connections accepted within one second of wall time.

Threads: one accepting, two per connection (one for each direction). Usable from pytest or as
`python tools/tcpfront.py LISTEN_PORT HOST:PORT [HOST:PORT ...]`.
"""
import socket
import sys
import threading
import time
from collections import Counter


class TcpFront:
    def __init__(self, targets, host="127.0.0.1", port=0, connect_timeout=2.0, backlog=512):
        self.targets = [tuple(t) for t in targets]
        if not self.targets:
            raise ValueError("TcpFront needs at least one target")
        self.connect_timeout = connect_timeout
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self._lsock.listen(backlog)
        self.host, self.port = self._lsock.getsockname()[:2]
        self._lock = threading.Lock()
        self._next = 0
        self._pairs = {}  # id -> (client, upstream, target index)
        self._ids = 0
        self._closed = False
        self.accepted = 0
        self.refused = 0  # clients closed because no target accepted them
        self.routed = Counter()  # target index -> connections forwarded there
        self._per_second = Counter()  # int(time.time()) -> connections accepted
        self._t = threading.Thread(target=self._accept_loop, name="tcpfront-accept", daemon=True)
        self._t.start()

    # -- what callers look at --------------------------------------------------------------
    def connections(self):
        """Open forwarded connections per target index (a dict; targets without any are absent)."""
        with self._lock:
            return dict(Counter(i for _, _, i in self._pairs.values()))

    def peak_accepts_per_s(self):
        with self._lock:
            return max(self._per_second.values()) if self._per_second else 0

    def cut(self, target=None):
        """Close every forwarded connection (or only those to one target index) right now."""
        with self._lock:
            victims = [k for k, (_, _, i) in self._pairs.items() if target is None or i == target]
        for k in victims:
            self._drop(k)

    def close(self):
        self._closed = True
        try:
            self._lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._lsock.close()
        except OSError:
            pass
        self.cut()
        self._t.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "TcpFront(%s:%d -> %s)" % (self.host, self.port, self.targets)

    # -- plumbing --------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._closed:
            try:
                c, _ = self._lsock.accept()
            except OSError:
                if self._closed:
                    return
                time.sleep(0.01)  # EMFILE and the like: do not spin
                continue
            with self._lock:
                self.accepted += 1
                self._per_second[int(time.time())] += 1
            threading.Thread(target=self._serve, args=(c,), name="tcpfront-conn", daemon=True).start()

    def _dial(self):
        """(socket, index) of the next target that accepts a connection, or (None, None)."""
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.targets)
        for k in range(len(self.targets)):
            i = (start + k) % len(self.targets)
            try:
                u = socket.create_connection(self.targets[i], timeout=self.connect_timeout)
            except OSError:
                continue
            u.settimeout(None)
            return u, i
        return None, None

    def _serve(self, c):
        u, i = self._dial()
        if u is None or self._closed:
            with self._lock:
                self.refused += 1
            for s in (c, u):
                if s is not None:
                    s.close()
            return
        for s in (c, u):
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        with self._lock:
            self._ids += 1
            key = self._ids
            self._pairs[key] = (c, u, i)
            self.routed[i] += 1
        threading.Thread(target=self._pipe, args=(key, u, c), name="tcpfront-down", daemon=True).start()
        self._pipe(key, c, u)

    def _pipe(self, key, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._drop(key)

    def _drop(self, key):
        with self._lock:
            pair = self._pairs.pop(key, None)
        if pair is None:
            return
        for s in pair[:2]:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


def main(argv):
    if len(argv) < 2 or any(":" not in a for a in argv[1:]):
        print("usage: tcpfront.py LISTEN_PORT HOST:PORT [HOST:PORT ...]", file=sys.stderr)
        return 2
    targets = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in argv[1:])]
    f = TcpFront(targets, port=int(argv[0]))
    print("forwarding %s:%d -> %s" % (f.host, f.port, ", ".join(argv[1:])), flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
