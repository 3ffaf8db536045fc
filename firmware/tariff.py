# Tariff engine: turns metered Wh into money, integer only, with an exact remainder.
# A price is given per kWh in minor currency units divided by `scale` (e.g. 25340 with
# scale 1000 is 25.340 cents/kWh); the fraction of a minor unit not yet charged is
# carried in `rem`, so the total charged always equals floor(total Wh x price).


class TariffError(ValueError):
    pass


def _int(doc, key, lo, hi):
    v = doc.get(key)
    if type(v) is not int or v < lo or v > hi:
        raise TariffError("%s must be an integer in %d..%d" % (key, lo, hi))
    return v


class FlatTariff:
    kind = "flat"

    def __init__(self, price_per_kwh, scale):
        self.price = price_per_kwh
        self.den = scale * 1000  # Wh -> kWh, and the price's own scale
        self.rem = 0

    def charge(self, wh):
        """Money (minor units) for `wh` more Wh; keeps the exact remainder."""
        acc = self.rem + wh * self.price
        minor = acc // self.den
        self.rem = acc - minor * self.den
        return minor


def from_doc(doc):
    """Build a tariff from its JSON document (already decoded); a bad one raises TariffError."""
    if not isinstance(doc, dict):
        raise TariffError("tariff must be a JSON object")
    if doc.get("v") != 1:
        raise TariffError("unsupported tariff version")
    kind = doc.get("kind")
    if kind == "flat":
        scale = _int(doc, "scale", 1, 100000)
        return FlatTariff(_int(doc, "price_per_kwh", 0, 10000000), scale)
    raise TariffError("unknown tariff kind")
