"""A private three-node RabbitMQ cluster with its MQTT plugin on 127.0.0.1, for tests and the fleet.

    from rabbitcluster import Cluster
    with Cluster() as c:                 # start(n=3): nodes up, clustered, MQTT listening everywhere
        connect_to(c.host, c.front_port) # one address for every client (TcpFront, round robin)
        c.mqtt_ports, c.amqp_ports       # each node's own listeners, node 0 first
        c.kill(1)                        # SIGKILL node 1: a crash, not a clean stop
        c.running(1)                     # False
        c.revive(1)                      # start it again; it rejoins the cluster
        c.crash(down_for=1.0)            # kill the busiest node, revive it after 1 s
        c.restart()                      # the same with a clean stop (SIGTERM)
        print(c.log_text())

Nodes are numbered from 0 in every call and list (node i is pmfleet<i+1>@localhost).
A Cluster stands where a tools/mpbroker.py Broker did: `host`, `port` (the front), `start()`,
`restart(down_for)`, `close()`, `log_text()`; plus `name`, `nodes`, `crash(down_for)`,
`backend_addrs()` and `peak_connects_per_s()`.

Each node is its own `rabbitmq-server` (Debian's 3.10) with its own node name
(pmfleetN@localhost), ports, data and log directories, config and enabled_plugins file, under
one temporary directory that close() removes. The nodes share an Erlang cookie in a private
HOME and talk through a private epmd on a port of their own (ERL_EPMD_PORT), so a system
broker (5672/1883, epmd on 4369) is never touched and never seen. Clients log in as
`pmtest` / TEST_PASSWORD, or anonymously over MQTT (mapped to the same user): test values, good
on 127.0.0.1 only.

What makes a node's crash lose nothing a client was promised (docs/broker.md, *Clustered
broker: RabbitMQ*):

* `mqtt.durable_queue_type = quorum`: the queue behind a clean_session=false client's QoS 1
  subscriptions is a quorum queue, replicated on all three nodes (Raft). A QoS 1 publish is
  acknowledged (PUBACK) only once every queue it was routed to has it on a majority.
* The policy `pm-mqtt-mirror` (ha-mode all, automatic sync) on the classic queues the MQTT
  plugin still makes for clean-session QoS 1 subscriptions (the meters' `cmd`). Without it such
  a queue is durable and lives on one node only; once that node is dead, its client connects to
  another node but is thrown out at every SUBSCRIBE ("home node ... of durable queue ... is down
  or inaccessible") until the dead node comes back. Mirrored, a survivor takes the queue over.

Competing consumers (the MQTT plugin of 3.10 has no shared subscriptions): backend workers
read one durable quorum queue bound to amq.topic over AMQP 0-9-1 (pika), see `shared_queue`
and `Worker`.
"""

import atexit
import collections
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HOST = "127.0.0.1"
USER = "pmtest"
TEST_PASSWORD = "pmtest-only-on-loopback"  # a test fixture's password, not a secret
NODE_PREFIX = "pmfleet"
EXCHANGE = "amq.topic"  # where the MQTT plugin publishes (MQTT '/' becomes '.')
MIRROR_POLICY = "pm-mqtt-mirror"
MIRROR_PATTERN = r"^mqtt-subscription-.*qos1$"
PROBE_ID = "pm-cluster-probe"  # client id of the readiness probes

_SERVER_DIRS = ("/usr/lib/rabbitmq/bin",  # Debian: /usr/sbin/rabbitmq-* are wrappers that su to rabbitmq
                "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/sbin", "/usr/sbin")


class RabbitMQNotFound(RuntimeError):
    pass


class ClusterError(RuntimeError):
    pass


def find_rabbitmq():
    """(rabbitmq-server, rabbitmqctl) scripts: $RABBITMQ_SERVER's directory, Debian's, PATH."""
    dirs = []
    if os.environ.get("RABBITMQ_SERVER"):
        dirs.append(os.path.dirname(os.environ["RABBITMQ_SERVER"]))
    dirs.extend(_SERVER_DIRS)
    w = shutil.which("rabbitmq-server")
    if w:
        dirs.append(os.path.dirname(w))
    for d in dirs:
        server, ctl = os.path.join(d, "rabbitmq-server"), os.path.join(d, "rabbitmqctl")
        if os.path.isfile(server) and os.access(server, os.X_OK) and os.access(ctl, os.X_OK):
            if d == "/usr/sbin" and os.path.isdir("/usr/lib/rabbitmq/bin"):
                continue  # the su wrapper; the real scripts were found above
            return server, ctl
    raise RabbitMQNotFound(
        "rabbitmq-server not found; install it with `sudo apt-get install rabbitmq-server` "
        "(or run tools/ensure_rabbitmq.sh), or set $RABBITMQ_SERVER to its rabbitmq-server script"
    )


def find_epmd():
    for c in (shutil.which("epmd"), "/usr/bin/epmd", "/usr/lib/erlang/bin/epmd"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise RabbitMQNotFound("epmd (Erlang) not found; it comes with rabbitmq-server's erlang-base")


def free_port(host=HOST):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _free_ports(k, host=HOST):
    """k distinct free ports (held open together, so no two are the same)."""
    socks = []
    try:
        for _ in range(k):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mqtt_probe(host, port, timeout=2.0, client_id=PROBE_ID, username=USER, password=TEST_PASSWORD):
    """0 when an MQTT 3.1.1 CONNECT gets CONNACK 'accepted'; the CONNACK code otherwise;
    raises OSError when nothing answers. A clean session, disconnected straight away."""
    cid, user, pw = client_id.encode(), username.encode(), password.encode()
    var = b"\x00\x04MQTT\x04\xc2\x00\x0a"  # level 4, clean session + username + password, keepalive 10
    payload = b"".join(len(x).to_bytes(2, "big") + x for x in (cid, user, pw))
    body = var + payload
    if len(body) > 127:
        raise ValueError("client id, user and password too long for the probe")
    pkt = b"\x10" + bytes([len(body)]) + body  # < 128 bytes: one length byte
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(pkt)
        got = b""
        while len(got) < 4:
            more = s.recv(4 - len(got))
            if not more:
                raise ConnectionResetError("closed before CONNACK")
            got += more
        if got[0] != 0x20:
            raise ConnectionError("not a CONNACK: %r" % got)
        if got[3] == 0:
            try:
                s.sendall(b"\xe0\x00")
            except OSError:
                pass
        return got[3]


def mqtt_filter_to_amqp(topic_filter):
    """An MQTT topic filter as an amq.topic binding key: '/' -> '.', '+' -> '*', '#' stays."""
    levels = topic_filter.split("/")
    for lv in levels:
        if "." in lv or "*" in lv or (lv not in ("+", "#") and ("+" in lv or "#" in lv)):
            raise ValueError("topic filter level %r cannot be bound on amq.topic" % lv)
    return ".".join("*" if lv == "+" else lv for lv in levels)


def amqp_key_to_mqtt(routing_key):
    return routing_key.replace(".", "/")


class Node:
    def __init__(self, index, root, ports):
        self.index = index
        self.name = "%s%d@localhost" % (NODE_PREFIX, index + 1)
        self.amqp_port, self.mqtt_port, self.dist_port = ports
        self.dir = root / ("node%d" % (index + 1))
        self.log_path = self.dir / "log" / "rabbit.log"
        self.proc = None
        self.out = None

    def __repr__(self):
        return "Node(%s, mqtt %d, amqp %d)" % (self.name, self.mqtt_port, self.amqp_port)


class Cluster:
    """n RabbitMQ nodes clustered on 127.0.0.1, their MQTT listeners behind one TcpFront."""

    name = "rabbitmq"

    def __init__(self, n=3, start=False, start_timeout=180.0, durable_queue_type="quorum", mirror=True,
                 front=True):
        self.host = HOST
        self.n = n
        self.start_timeout = start_timeout
        self.durable_queue_type = durable_queue_type
        self.mirror = mirror
        self._want_front = front
        self.front = None
        self.members = []
        self.start_s = None  # seconds start() took
        self._server, self._ctl = find_rabbitmq()
        self._epmd_bin = find_epmd()
        self._dir = Path(tempfile.mkdtemp(prefix="rabbitcluster-"))
        self._home = self._dir / "home"
        self._epmd = None
        self.epmd_port = None
        self._lock = threading.Lock()
        atexit.register(self.close)
        if start:
            self.start(n)

    # -- what callers use --------------------------------------------------------------------
    @property
    def nodes(self):
        """How many nodes the cluster has (up or not)."""
        return len(self.members)

    @property
    def mqtt_ports(self):
        return [nd.mqtt_port for nd in self.members]

    @property
    def amqp_ports(self):
        return [nd.amqp_port for nd in self.members]

    @property
    def node_names(self):
        return [nd.name for nd in self.members]

    @property
    def front_port(self):
        return self.front.port if self.front else None

    @property
    def port(self):
        """The one port clients use (the front), so a Cluster stands where a Broker did."""
        return self.front_port

    def running(self, i):
        p = self.members[i].proc
        return p is not None and p.poll() is None

    def live(self):
        return [i for i in range(len(self.members)) if self.running(i)]

    def kill(self, i):
        """SIGKILL node i's whole process group (sh wrapper, beam, its helpers): a crash. The
        connections it carried are closed by the kernel; the front closes their clients'."""
        nd = self.members[i]
        p, nd.proc = nd.proc, None
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._reap_group(p.pid)
        if nd.out:
            nd.out.close()
            nd.out = None

    def stop_node(self, i, timeout=60):
        """Stop node i cleanly (SIGTERM: RabbitMQ shuts down and closes its clients' connections,
        queues it leads move to the other nodes); SIGKILL if it has not finished within `timeout`."""
        nd = self.members[i]
        p = nd.proc
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            pass
        self.kill(i)

    def revive(self, i, timeout=None, wait=True):
        """Start a stopped or killed node again on its ports and data: it rejoins the cluster by
        itself. With wait (the default), returns once it is back in the cluster and its MQTT
        listener answers; without, at once (the front skips it until it listens)."""
        if self.running(i):
            return self
        deadline = time.monotonic() + (timeout or self.start_timeout)
        self._launch(self.members[i])
        if wait:
            self._wait_booted(self.members[i], deadline)
            self._wait_cluster(deadline, expect=self.live())
        return self

    def busiest(self):
        """Index of the live node carrying the most connections through the front (lowest on a tie)."""
        per = self.front.connections() if self.front else {}
        live = self.live()
        return max(live, key=lambda i: (per.get(i, 0), -i)) if live else None

    def crash(self, down_for=0.0, node=None, wait=True):
        """Kill a node (default: the busiest), stay down `down_for` seconds, then revive it.
        Returns the index of the node that crashed."""
        return self._bounce(self.kill, down_for, node, wait)

    def restart(self, down_for=0.0, node=None, wait=True):
        """A clean restart of one node (default: the busiest), the others serving meanwhile.
        Returns the index of the node that was restarted."""
        return self._bounce(self.stop_node, down_for, node, wait)

    def _bounce(self, down, down_for, node, wait):
        i = self.busiest() if node is None else node
        down(i)
        if down_for:
            time.sleep(down_for)
        self.revive(i, wait=wait)
        return i

    def backend_addrs(self):
        """Where a backend's MQTT clients connect: the front, whatever node is down."""
        return [(self.host, self.front_port)]

    def peak_connects_per_s(self):
        """Most MQTT connections the nodes accepted in one second (from their logs; this
        module's own readiness probes left out)."""
        per_s = Counter(m.group(1) for m in re.finditer(
            r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\S* \[info\] \S+ accepting MQTT connection .*client id: (?!%s\))"
            % PROBE_ID, self.log_text(), re.M))
        return max(per_s.values()) if per_s else 0

    def log_text(self):
        parts = []
        for nd in self.members:
            try:
                text = nd.log_path.read_text(errors="replace")
            except OSError:
                text = ""
            parts.append("==> %s <==\n%s" % (nd.name, text))
        return "\n".join(parts)

    def ctl(self, i, *args, timeout=60, check=True):
        """Run rabbitmqctl against node i; the CompletedProcess (ClusterError when check fails)."""
        cmd = [self._ctl, "-n", self.members[i].name] + [str(a) for a in args]
        try:
            r = subprocess.run(cmd, env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout, cwd=self._dir)
        except subprocess.TimeoutExpired:
            raise ClusterError("rabbitmqctl %s timed out after %ss" % (" ".join(cmd[1:]), timeout))
        if check and r.returncode != 0:
            raise ClusterError("rabbitmqctl %s failed (%d): %s%s" % (" ".join(cmd[1:]), r.returncode,
                                                                     r.stdout[-2000:], r.stderr[-2000:]))
        return r

    def running_nodes(self, via=None):
        """Node names the cluster reports running, asked of node `via` (default: the first live)."""
        return list(self._status(self.live()[0] if via is None else via)[0])

    def queue_info(self, name, via=None):
        """{'name', 'type', 'node', 'members'} of one queue in vhost '/', or None when there is
        none: `node` is the node that leads it (a quorum queue's leader, a classic queue's
        master), `members` every node holding a copy (quorum members, or master and mirrors)."""
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
            raise ValueError("queue name %r" % name)
        via = self.live()[0] if via is None else via
        expr = ('case rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"%s">>)) of '
                '{ok, Q} -> T = amqqueue:get_type(Q), '
                '{L, M} = case amqqueue:get_pid(Q) of {_, N} -> {N, maps:get(nodes, amqqueue:get_type_state(Q), [])}; '
                'P -> {node(P), [node(P) | [node(S) || S <- amqqueue:get_slave_pids(Q)]]} end, '
                'lists:flatten(io_lib:format("type=~w node=~w members=~w", [T, L, M])); '
                '_ -> "none" end.') % name
        r = self.ctl(via, "eval", expr, timeout=60)
        m = re.search(r"type=(\w+) node='?([^' ]+)'? members=\[([^\]]*)\]", r.stdout)
        if not m:
            return None
        kind = {"rabbit_quorum_queue": "quorum", "rabbit_classic_queue": "classic"}.get(m.group(1), m.group(1))
        members = sorted(x.strip("' ") for x in m.group(3).split(",") if x.strip())
        return {"name": name, "type": kind, "node": m.group(2), "members": members}

    def node_index(self, name):
        return self.node_names.index(name)

    # -- competing consumers (AMQP 0-9-1, pika) ----------------------------------------------
    def amqp_endpoints(self):
        return [(self.host, p) for p in self.amqp_ports]

    def shared_queue(self, name, bindings, via=None):
        """Declare the durable quorum queue `name` and bind it to amq.topic for each MQTT topic
        filter in `bindings` (e.g. 'pm/v1/+/tele'). Every message an MQTT client publishes on a
        matching topic from then on is stored once in it, for Workers to share. Declare it before
        the publishers start: a message that matches no queue is dropped by the broker."""
        import pika

        via = self.live()[0] if via is None else via
        conn = pika.BlockingConnection(amqp_parameters(self.host, self.amqp_ports[via]))
        try:
            ch = conn.channel()
            ch.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
            for f in bindings:
                ch.queue_bind(name, EXCHANGE, routing_key=mqtt_filter_to_amqp(f))
        finally:
            conn.close()
        return name

    def worker(self, queue, handler, **kw):
        """A started Worker on `queue` that connects to the live nodes in turn."""
        return Worker(self.amqp_endpoints(), queue, handler, **kw)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, n=None):
        """Start n nodes and cluster them; returns self once every node is running, clustered,
        in the MQTT client-id tracker and accepting MQTT connections (ClusterError otherwise,
        everything stopped). Node 1 boots first; the others boot in parallel with node 1 as
        their seed (classic_config peer discovery), so they join while booting; a node that
        came up on its own all the same is joined with rabbitmqctl stop_app / join_cluster /
        start_app."""
        if self.members and self.live():
            return self
        self.n = n or self.n
        if self.n < 1:
            raise ValueError("a cluster needs at least one node")
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        try:
            for attempt in (1, 2):
                try:
                    self._start_nodes(deadline)
                    break
                except ClusterError as e:
                    # A free port chosen at random may be taken before the node binds it: once
                    # more with new ports.
                    if attempt == 2 or "eaddrinuse" not in str(e).lower():
                        raise
                    self._drop_nodes()
            if self._want_front and self.front is None:
                from tcpfront import TcpFront

                self.front = TcpFront([(self.host, p) for p in self.mqtt_ports])
        except BaseException:
            self.close()
            raise
        self.start_s = time.monotonic() - t0
        return self

    def _start_nodes(self, deadline):
        self._prepare()
        self._launch(self.members[0])
        self._wait_booted(self.members[0], deadline)
        for nd in self.members[1:]:
            self._launch(nd)
        for nd in self.members[1:]:
            self._wait_booted(nd, deadline)
        want = list(range(self.n))
        running = set(self._status(0)[0])
        for i in want[1:]:
            if self.members[i].name not in running:
                self.join(i, timeout=self._left(deadline))
        self._wait_cluster(deadline, expect=want)

    def _drop_nodes(self):
        for i in range(len(self.members)):
            self.kill(i)
        for nd in self.members:
            shutil.rmtree(nd.dir, ignore_errors=True)
        self.members = []

    def join(self, i, to=0, timeout=120):
        """Join node i to node `to`'s cluster with rabbitmqctl (stop_app, join_cluster, start_app)."""
        deadline = time.monotonic() + timeout
        self.ctl(i, "stop_app", timeout=self._left(deadline))
        self.ctl(i, "join_cluster", self.members[to].name, timeout=self._left(deadline))
        self.ctl(i, "start_app", timeout=self._left(deadline))

    def close(self):
        with self._lock:
            if self.front:
                self.front.close()
                self.front = None
            for i in range(len(self.members)):
                self.kill(i)
            if self._epmd is not None:
                if self._epmd.poll() is None:
                    self._epmd.kill()
                    self._epmd.wait(5)
                self._epmd = None
            shutil.rmtree(self._dir, ignore_errors=True)
            atexit.unregister(self.close)

    def __enter__(self):
        return self.start() if not self.members else self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "Cluster(%s, front %s)" % (", ".join("%s %s" % (nd.name, "up" if self.running(nd.index) else "down")
                                                      for nd in self.members), self.front_port)

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _left(deadline):
        return max(1.0, deadline - time.monotonic())

    def _env(self, node=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self._home),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_CONF_ENV_FILE": str(self._dir / "rabbitmq-env.conf"),  # empty: not /etc's
            # rabbitmqctl's own Erlang node takes any free port, not 35672-35682.
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "LANG": env.get("LANG", "C.UTF-8"),
            "LC_ALL": "C.UTF-8",
        })
        if node is not None:
            d = node.dir
            env.update({
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_IP_ADDRESS": HOST,
                "RABBITMQ_NODE_PORT": str(node.amqp_port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_CONFIG_FILES": str(d / "conf.d"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_MNESIA_DIR": str(d / "mnesia" / node.name),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_LOGS": str(node.log_path),
                "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            })
        return env

    def _prepare(self):
        self._home.mkdir(mode=0o700, exist_ok=True)
        cookie = self._home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20).upper())
            cookie.chmod(0o400)
        (self._dir / "rabbitmq-env.conf").write_text("")
        self._start_epmd()
        ports = _free_ports(3 * self.n)
        self.members = [Node(i, self._dir, ports[3 * i:3 * i + 3]) for i in range(self.n)]
        for nd in self.members:
            (nd.dir / "log").mkdir(parents=True, exist_ok=True)
            (nd.dir / "mnesia").mkdir(exist_ok=True)
            (nd.dir / "conf.d").mkdir(exist_ok=True)
            (nd.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
            (nd.dir / "rabbitmq.conf").write_text(self._config(nd))
        (self._dir / "definitions.json").write_text(self._definitions())

    def _definitions(self):
        """Imported by every node at boot: the test user, and the mirror policy (see the top)."""
        d = {
            "users": [{"name": USER, "password": TEST_PASSWORD, "tags": "administrator"}],
            "vhosts": [{"name": "/"}],
            "permissions": [{"user": USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
            "policies": [],
        }
        if self.mirror and self.n > 1:
            d["policies"].append({"vhost": "/", "name": MIRROR_POLICY, "pattern": MIRROR_PATTERN,
                                  "apply-to": "queues", "priority": 0,
                                  "definition": {"ha-mode": "all", "ha-sync-mode": "automatic"}})
        return json.dumps(d, indent=1)

    def _config(self, nd):
        lines = [
            "listeners.tcp.default = %s:%d" % (HOST, nd.amqp_port),
            "mqtt.listeners.tcp.default = %s:%d" % (HOST, nd.mqtt_port),
            "mqtt.tcp_listen_options.backlog = 1024",  # a whole fleet reconnects at once
            "mqtt.tcp_listen_options.nodelay = true",
            "mqtt.allow_anonymous = true",
            "mqtt.default_user = %s" % USER,
            "mqtt.default_pass = %s" % TEST_PASSWORD,
            "load_definitions = %s" % (self._dir / "definitions.json"),
            "loopback_users = none",
            # With 3 nodes or more a node cut off from the majority stops serving instead of
            # going on alone (no split brain); with 2 that would stop the survivor of a crash.
            "cluster_partition_handling = %s" % ("pause_minority" if self.n >= 3 else "ignore"),
            "disk_free_limit.absolute = 10MB",
            "log.console = false",
            "log.file.level = info",
        ]
        if self.durable_queue_type:
            lines.append("mqtt.durable_queue_type = %s" % self.durable_queue_type)
        if nd.index > 0:
            lines += ["cluster_formation.peer_discovery_backend = classic_config",
                      "cluster_formation.classic_config.nodes.1 = %s" % self.members[0].name]
        return "\n".join(lines) + "\n"

    def _start_epmd(self):
        if self._epmd is not None and self._epmd.poll() is None:
            return
        for _ in range(3):
            self.epmd_port = free_port()
            self._epmd = subprocess.Popen([self._epmd_bin, "-port", str(self.epmd_port), "-address", HOST],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._epmd.poll() is None:
                try:
                    socket.create_connection((HOST, self.epmd_port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.05)
            if self._epmd.poll() is None:
                self._epmd.kill()
            self._epmd.wait(5)
        raise ClusterError("could not start a private epmd on 127.0.0.1")

    def _launch(self, nd):
        nd.out = open(nd.dir / "stdout.log", "ab")
        nd.proc = subprocess.Popen([self._server], env=self._env(nd), cwd=nd.dir, stdin=subprocess.DEVNULL,
                                   stdout=nd.out, stderr=subprocess.STDOUT, start_new_session=True)

    def _tail(self, nd, k=60):
        out = ""
        for p in (nd.dir / "stdout.log", nd.log_path):
            try:
                out += "\n".join(p.read_text(errors="replace").splitlines()[-k:]) + "\n"
            except OSError:
                pass
        return out

    def _wait_booted(self, nd, deadline):
        """Until node nd's MQTT listener answers CONNECT with 'accepted'."""
        last = None
        while time.monotonic() < deadline:
            if nd.proc is None or nd.proc.poll() is not None:
                raise ClusterError("%s exited (status %s) while starting; log tail:\n%s" % (
                    nd.name, nd.proc.returncode if nd.proc else "killed", self._tail(nd)))
            try:
                rc = mqtt_probe(HOST, nd.mqtt_port, timeout=2.0)
                if rc == 0:
                    return
                last = "CONNACK %d" % rc
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise ClusterError("%s: MQTT on %s:%d not accepting within the start timeout (last: %s); log tail:\n%s" % (
            nd.name, HOST, nd.mqtt_port, last, self._tail(nd)))

    def _wait_cluster(self, deadline, expect):
        """Until the cluster reports exactly the nodes `expect` running, the MQTT client-id
        tracker (a Raft cluster of its own, which must keep a majority for clients to connect)
        has each of them as a member, and every one accepts an MQTT connection."""
        want = sorted(self.members[i].name for i in expect)
        last = None
        while time.monotonic() < deadline:
            try:
                running, tracker = self._status(expect[0])
                if running != want:
                    last = "running %s" % running
                elif not set(want) <= set(tracker):
                    last = "MQTT client-id tracker members %s" % tracker
                else:
                    for i in expect:
                        rc = mqtt_probe(HOST, self.members[i].mqtt_port, timeout=5.0)
                        if rc != 0:
                            raise ClusterError("CONNACK %d from %s" % (rc, self.members[i].name))
                    return
            except (ClusterError, OSError, ValueError) as e:
                last = str(e)[:500]
            time.sleep(0.5)
        raise ClusterError("cluster did not come up with %s running within the timeout (last: %s)" % (want, last))

    def _status(self, via):
        """(running node names, MQTT client-id tracker members), asked of node `via` in one call."""
        r = self.ctl(via, "eval", 'R = rabbit_nodes:all_running(), '
                                  'T = case ra:members({mqtt_node, node()}) of {ok, M, _} -> [N || {_, N} <- M]; '
                                  '_ -> [] end, lists:flatten(io_lib:format("running=~w tracker=~w", [R, T])).',
                     timeout=60)
        m = re.search(r"running=\[([^\]]*)\] tracker=\[([^\]]*)\]", r.stdout)
        if not m:
            raise ClusterError("unexpected answer from %s: %r" % (self.members[via].name, r.stdout[-500:]))
        return tuple(sorted(x.strip("' ") for x in g.split(",") if x.strip()) for g in m.groups())

    @staticmethod
    def _reap_group(pgid, timeout=5.0):
        """Wait until no process of the group is left (beam's helpers die with it)."""
        deadline = time.monotonic() + timeout
        while group_alive(pgid) and time.monotonic() < deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)


def group_alive(pgid):
    """True while a process of group `pgid` runs (zombies waiting for their reaper do not count)."""
    if os.path.isdir("/proc/self"):
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, pgrp, ...
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# -- AMQP 0-9-1 workers ------------------------------------------------------------------------------
def amqp_parameters(host, port, user=USER, password=TEST_PASSWORD, heartbeat=10):
    import pika

    return pika.ConnectionParameters(host=host, port=port, credentials=pika.PlainCredentials(user, password),
                                     heartbeat=heartbeat, blocked_connection_timeout=30,
                                     connection_attempts=1, socket_timeout=5)


class Worker:
    """One competing consumer of a shared queue (Cluster.shared_queue) over AMQP 0-9-1.

        def handle(topic, payload, redelivered): ...    # MQTT topic, bytes, bool
        w = Worker(cluster.amqp_endpoints(), "pm-backend", handle)   # started, in its own thread
        ...
        w.stop()

    Each message of the queue goes to one worker; it is acknowledged after `handle` returns, so
    a worker (or the node it reads through) that dies first leaves the message to be delivered
    again, to whichever worker is still reading, with `redelivered` True: delivery is at least
    once, and a handler deduplicates on (meter, seq) as protocol.md §10 asks of a backend. A
    handler that raises has its message returned to the queue. A connection that breaks is
    reopened to the next endpoint in turn, so a worker keeps going while one node is down.
    """

    def __init__(self, endpoints, queue, handler, prefetch=20, name="worker", user=USER, password=TEST_PASSWORD,
                 start=True):
        self.endpoints = list(endpoints)
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.name = name
        self._creds = (user, password)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.delivered = 0
        self.connects = 0
        self.errors = collections.deque(maxlen=50)  # the latest connection and handler failures
        self.endpoint = None  # index of the endpoint it reads through now
        self._next = 0
        self._t = threading.Thread(target=self._run, name="worker-" + name, daemon=True)
        if start:
            self.start()

    def start(self):
        self._t.start()
        return self

    def wait_consuming(self, timeout=30):
        """True once the worker is consuming (after its first connect)."""
        return self._ready.wait(timeout)

    def stop(self, timeout=10):
        self._stop.set()
        self._t.join(timeout)

    def _run(self):
        import pika
        import pika.exceptions as pe

        while not self._stop.is_set():
            i = self._next % len(self.endpoints)
            self._next += 1
            host, port = self.endpoints[i]
            conn = None
            try:
                conn = pika.BlockingConnection(amqp_parameters(host, port, *self._creds))
                ch = conn.channel()
                ch.basic_qos(prefetch_count=self.prefetch)
                self.connects += 1
                self.endpoint = i
                self._ready.set()
                for method, props, body in ch.consume(self.queue, inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is None:
                        continue
                    try:
                        self.handler(amqp_key_to_mqtt(method.routing_key), body, bool(method.redelivered))
                    except Exception as e:  # the handler's failure: give the message back
                        self.errors.append(repr(e))
                        ch.basic_nack(method.delivery_tag, requeue=True)
                        continue
                    ch.basic_ack(method.delivery_tag)
                    self.delivered += 1
                try:
                    ch.cancel()
                except pe.AMQPError:
                    pass
            except (pe.AMQPError, OSError) as e:
                self.errors.append("%s:%d %r" % (host, port, e))
                self._stop.wait(0.2)  # then the next endpoint
            finally:
                self.endpoint = None
                if conn is not None and conn.is_open:
                    try:
                        conn.close()
                    except (pe.AMQPError, OSError):
                        pass


def measure(clients=30, n=3):
    """Start a cluster, put `clients` meter-like MQTT clients on its front (clean session, QoS 1
    subscription to their own cmd topic, a retained will, reconnecting after 50 ms to 1 s), kill
    the busiest node and time until every client is connected and subscribed again. Returns the
    figures as a dict."""
    import paho.mqtt.client as mqtt

    out = {"nodes": n, "clients": clients}
    with Cluster(n=n, start=True) as c:
        out["start_s"] = round(c.start_s, 1)
        lock = threading.Lock()
        state = {}  # client id -> (connects, subscribed)
        cs = []
        for k in range(clients):
            cid = "pm-measure-%03d" % k
            cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
            cl.username_pw_set(USER, TEST_PASSWORD)
            cl.reconnect_delay_set(0.05, 1)
            cl.will_set("pm/v1/%s/status" % cid, b'{"online":0}', 1, True)

            def on_connect(cli, u, f, rc, p=None, cid=cid):
                if rc == 0:
                    with lock:
                        state[cid] = (state.get(cid, (0, False))[0] + 1, False)
                    cli.subscribe("pm/v1/%s/cmd" % cid, 1)

            def on_subscribe(cli, u, mid, rcs, p=None, cid=cid):
                with lock:
                    state[cid] = (state[cid][0], True)

            def on_disconnect(cli, u, f, rc, p=None, cid=cid):
                with lock:
                    state[cid] = (state.get(cid, (0, False))[0], False)

            cl.on_connect, cl.on_subscribe, cl.on_disconnect = on_connect, on_subscribe, on_disconnect
            cl.connect_async(c.host, c.front_port, keepalive=30)
            cl.loop_start()
            cs.append(cl)

        def all_up(before=None):
            with lock:
                return len(state) == clients and all(sub for _, sub in state.values()) and (
                    before is None or sum(state[k][0] > before[k][0] for k in state) >= moved)

        deadline = time.monotonic() + 120
        while not all_up() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not all_up():
            raise ClusterError("not all %d clients connected within 120 s" % clients)
        per = c.front.connections()
        victim = c.busiest()
        moved = per.get(victim, 0)
        with lock:
            before = dict(state)
        t0 = time.monotonic()
        c.kill(victim)
        out["kill_s"] = round(time.monotonic() - t0, 2)
        deadline = t0 + 120
        while not all_up(before) and time.monotonic() < deadline:
            time.sleep(0.01)
        out["clients_on_killed_node"] = moved
        out["kill_to_all_reconnected_s"] = round(time.monotonic() - t0, 2) if all_up(before) else None
        for cl in cs:
            cl.disconnect()
            cl.loop_stop()
    return out


def main(argv=None):
    """`python tools/rabbitcluster.py [N]`: start a cluster, print its ports, run until Ctrl-C.
    `python tools/rabbitcluster.py --measure [CLIENTS]`: the figures of measure(), as JSON."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--measure":
        print(json.dumps(measure(int(argv[1]) if len(argv) > 1 else 30), sort_keys=True))
        return 0
    n = int(argv[0]) if argv else 3
    with Cluster(n=n, start=True) as c:
        print("cluster of %d up in %.1f s: front 127.0.0.1:%d, MQTT %s, AMQP %s (user %s)" % (
            n, c.start_s, c.front_port, c.mqtt_ports, c.amqp_ports, USER), flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
