"""network stand-in (boards/esp32port/network.py): the station interface associates a little
later in virtual time, and only with the network the world has."""

USES_MICROPYTHON = True


def test_wlan_connects_after_a_short_virtual_delay(esp32):
    r = esp32("""
import mptest, time, network, machine, esp32world as W
W.setup({"wifi": {"ssid": "SiteNet", "password": "pw", "connect_ms": 3000}})
w = network.WLAN(network.STA_IF)
mptest.check(w is network.WLAN(network.STA_IF), "one station interface")
mptest.raises(OSError, w.connect, "SiteNet", "pw")  # not active yet: "Wifi Not Started"
w.active(True)
w.connect("SiteNet", "pw")
mptest.eq((w.isconnected(), w.status()), (False, network.STAT_CONNECTING), "connecting")
time.sleep_ms(2999)
mptest.check(not w.isconnected(), "not yet")
time.sleep_ms(1)
mptest.eq((w.isconnected(), w.status()), (True, network.STAT_GOT_IP), "associated after connect_ms")
mptest.eq(len(w.ifconfig()), 4, "ifconfig")
mptest.eq(w.config("mac"), machine.unique_id(), "the MAC is the chip id")
w.connect("SiteNet", "wrong")
time.sleep_ms(3000)
mptest.eq((w.isconnected(), w.status()), (False, network.STAT_WRONG_PASSWORD), "wrong password")
w.connect("Other", "pw")
time.sleep_ms(3000)
mptest.eq(w.status(), network.STAT_NO_AP_FOUND, "no such network")
mptest.done()
""")
    assert r["ok"], r["failures"]
