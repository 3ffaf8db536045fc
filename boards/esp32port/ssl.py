# ESP32 port stand-in: ssl (extmod's ssl.py over mbedTLS), reduced to what decides whether a
# meter gets online: the certificate's dates against the board's own clock. mbedTLS on the ESP32
# checks notBefore/notAfter against the system time, which is the RTC: an RTC back at 2000 after
# a power cut fails every handshake with MBEDTLS_ERR_X509_CERT_VERIFY_FAILED. The broker's
# certificate is part of the virtual world (esp32world "tls": {"not_before", "not_after"} in Unix
# seconds; None: any date passes). No encryption happens here: once the check passes, the socket
# carries plain MQTT to the test's broker (the TLS code path itself is tested on the 64-bit port
# with real certificates, host_tests/firmware/test_link.py).
import esp32world as _w

PROTOCOL_TLS_CLIENT = 0
PROTOCOL_TLS_SERVER = 1
CERT_NONE = 0
CERT_OPTIONAL = 1
CERT_REQUIRED = 2
MBEDTLS_ERR_X509_CERT_VERIFY_FAILED = -9984  # -0x2700
_Y2000 = 946684800
handshakes = 0  # attempted / refused, for tests
refused = 0


class SSLContext:
    def __init__(self, protocol):
        if protocol not in (PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER):
            raise ValueError("protocol must be PROTOCOL_TLS_CLIENT or PROTOCOL_TLS_SERVER")
        self.verify_mode = CERT_REQUIRED if protocol == PROTOCOL_TLS_CLIENT else CERT_NONE
        self._ca = None

    def load_verify_locations(self, cafile=None, cadata=None):
        if cafile is not None:
            with open(cafile, "rb") as f:
                cadata = f.read()
        self._ca = cadata

    def load_cert_chain(self, certfile, keyfile):
        pass

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        global handshakes, refused
        handshakes += 1
        if self.verify_mode == CERT_REQUIRED:
            cert = _w.cfg.get("tls")
            now = _w.rtc_s + _Y2000  # the system time mbedTLS reads: the RTC
            if self._ca is None or (cert is not None and not cert["not_before"] <= now <= cert["not_after"]):
                refused += 1
                raise OSError(MBEDTLS_ERR_X509_CERT_VERIFY_FAILED)
        return sock
