"""The emulated front end's phase and RMS offset errors (emu_base.PHASE_URAD and the offset
model in each emulator): what the calibration trim works against, checked through the drivers."""

import json

import pytest

CHIPS = [
    # chip, phase key, current offset key, voltage offset key, an offset LSB in reading units (num, den)
    ("atm90e26", "phi", "ioffset", "uoffset", (1, 512), (1, 512)),
    ("atm90e32", "phi_a", "ioffset_a", "uoffset_a", (1, 512), (1, 512)),
    ("ade7953", "phi_a", "ioffset_a", "uoffset", (1, 100), (1, 260)),
]


@pytest.mark.parametrize("chip,phi,ioff,uoff,i_lsb,u_lsb", CHIPS)
def test_phase_and_offset_errors_follow_the_model(mpy, chip, phi, ioff, uoff, i_lsb, u_lsb):
    res = mpy("""
import sys, json, mptest, chipkit, meterchip
from simhw import emu_base
name, phi, ioff, uoff = sys.argv[1:5]
i_lsb, u_lsb = json.loads(sys.argv[5]), json.loads(sys.argv[6])
probe = chipkit.Kit(name)
forms = probe.chip.CAL_FORMS
true_cal = {phi: meterchip.from_signed(forms["phi"], 20),
            ioff: meterchip.from_signed(forms["ioffset"], -5000),
            uoff: meterchip.from_signed(forms["uoffset"], 3000)}
k = chipkit.Kit(name, true_cal=true_cal)   # the driver writes 0 to all three: errors show
k.m.start()
chip, emu = k.chip, k.emu

def read(p, pf, v=23000):
    for c in range(emu.n):
        emu.set_channel(c, p, v, pf)
    emu.advance(1000)
    chip.read_inst()
    return chip.p_w[0], chip.i_ma[0], chip.v_cv[0]

p1, i1, v1 = read(2300, 1000)
mptest.check(abs(p1 - 2300) <= 1, "PF 1: no phase error in active power (%d W)" % p1)
q = 1150 * 866 // 500  # Q at 1150 W, PF 0.5 (isqrt(750000) = 866)
want_dp = q * (0 - 20) * emu_base.PHASE_URAD / 1e6
p5, _, _ = read(1150, 500)
mptest.check(abs((p5 - 1150) - want_dp) <= 1.5, "PF 0.5: %d W, model %+.1f W" % (p5, want_dp))
want_di = 5000 * i_lsb[0] / i_lsb[1]
mptest.check(abs((i1 - 10000) - want_di) <= 1.5, "current offset %d mA, model %+.1f" % (i1 - 10000, want_di))
want_dv = -3000 * u_lsb[0] / u_lsb[1]
mptest.check(abs((v1 - 23000) - want_dv) <= 1.5, "voltage offset %d cV, model %+.1f" % (v1 - 23000, want_dv))
# The registers at the front end's values cancel the errors exactly.
cal = dict(chip.cal)
cal.update(true_cal)
chip.set_cal(cal)
mptest.check(k.m.reinit(), "re-init")
p5, _, _ = read(1150, 500)
_, i1, v1 = read(2300, 1000)
mptest.eq((p5, i1, v1), (1150, 10000, 23000), "calibrated: exact")
# An RMS register never goes below zero, whatever the offset.
cal[ioff] = meterchip.from_signed(forms["ioffset"], -20000)
chip.set_cal(cal)
k.m.reinit()
_, i0, _ = read(0, 1000)
mptest.eq(i0, 0, "no load, negative offset: clamped at 0")
mptest.done()
""", chip, phi, ioff, uoff, json.dumps(i_lsb), json.dumps(u_lsb), heap="160k")
    assert res.result["ok"]
