# ESP32 port stand-in: network (the station interface), following ports/esp32/network_wlan.c of
# MicroPython 1.28. connect() returns at once and the association completes a little later in
# virtual time (esp32world "wifi": ssid/password to check, connect_ms). Sockets are the host's
# whatever the state here: the firmware's link copes with a broker it cannot reach either way.
import esp32world as _w

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
_IP = ("192.168.4.20", "255.255.255.0", "192.168.4.1", "192.168.4.1")
_ifs = {}


def hostname(name=None):
    return "mpy-esp32" if name is None else None


class WLAN:
    IF_STA = STA_IF
    IF_AP = AP_IF
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __new__(cls, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        w = _ifs.get(interface_id)
        if w is None:
            w = object.__new__(cls)
            w._if = interface_id
            w._active = False
            w._status = STAT_IDLE
            w._ssid = w._key = None
            _ifs[interface_id] = w
        return w

    def __init__(self, interface_id=STA_IF):
        pass

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self.disconnect()

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        if ssid is not None:
            self._ssid, self._key = ssid, key
        wifi = _w.cfg["wifi"] or {}
        if wifi.get("ssid") not in (None, self._ssid):
            result = STAT_NO_AP_FOUND
        elif wifi.get("password") not in (None, self._key):
            result = STAT_WRONG_PASSWORD
        else:
            result = STAT_GOT_IP
        self._status = STAT_CONNECTING

        def done():
            self._status = result
        _w.wlan_done = done
        _w.wlan_due = _w.tadd(_w.ms, wifi.get("connect_ms", 2500))

    def disconnect(self):
        self._status = STAT_IDLE
        _w.wlan_due = -1

    def isconnected(self):
        return self._active and self._status == STAT_GOT_IP

    def status(self, param=None):
        if param is None:
            return self._status
        if param == "rssi" and self.isconnected():
            return -60
        raise ValueError("unknown status param")

    def ifconfig(self, config=None):
        if config is None:
            return _IP if self.isconnected() else ("0.0.0.0",) * 4
        return None

    def ipconfig(self, *args, **kwargs):
        if args == ("addr4",):
            return (self.ifconfig()[0], self.ifconfig()[1])
        raise ValueError("unknown config param")

    def config(self, *args, **kwargs):
        if kwargs:
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        p = args[0]
        if p == "mac":
            return _w.mac()
        if p in ("ssid", "essid"):
            return self._ssid or ""
        if p == "hostname":
            return hostname()
        raise ValueError("unknown config param")

    def scan(self):
        if not self._active:
            raise OSError("STA must be active")
        wifi = _w.cfg["wifi"] or {}
        ssid = wifi.get("ssid") or "host"
        return [(ssid.encode(), b"\x00\x11\x22\x33\x44\x55", 6, -60, 3, False)]
