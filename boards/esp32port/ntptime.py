# ESP32 port stand-in: ntptime (micropython-lib's ntptime, frozen in the ESP32 image): host,
# timeout, time() -> seconds since the port's epoch (2000), settime() -> the RTC. The server is
# part of the virtual world (esp32world "sntp"): None never answers (each query waits `timeout`
# virtual seconds, then OSError ETIMEDOUT); {"lie_s": n, "rtt_ms": m} answers the world's true
# time off by n seconds after m virtual ms. No answer either before Wi-Fi has an address (the
# port's getaddrinfo fails then).
import esp32world as _w

host = "pool.ntp.org"
timeout = 1
_Y2000 = 946684800  # the ESP32's epoch in Unix seconds
_ETIMEDOUT = 116  # ESP-IDF's errno
_EAI_FAIL = -202  # lwIP's getaddrinfo failure, as the port raises it
queries = 0  # how many time() calls reached the "server" (for tests)


def _wifi_up():
    import network
    w = network._ifs.get(network.STA_IF)
    return w is not None and w.isconnected()


def time():
    global queries
    if not _wifi_up():
        raise OSError(_EAI_FAIL)
    queries += 1
    srv = _w.cfg.get("sntp")
    if srv is None:
        _w.sleep_ms(int(timeout * 1000))
        raise OSError(_ETIMEDOUT)
    _w.sleep_ms(srv.get("rtt_ms", 20))
    return _w.cfg["utc"] + _w.up_s - _Y2000 + srv.get("lie_s", 0)


def settime():
    import machine
    import time as _time  # the port's (stand-in) time: gmtime on the 2000 epoch
    t = time()
    tm = _time.gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))
