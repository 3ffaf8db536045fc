# For the power-cut harnesses under MicroPython (tools/powercut_mp.py, tools/ota_sweep_mp.py): what
# the meter's hot-record store committed. After a cut the record found on flash must be the last
# commit that returned, or one that was under way when the power went.


def watch(store, run):
    """Wrap store.commit: run.last_ok is the payload of the last commit that returned, and
    run.attempts the payloads of the commits tried since (any of them may have landed)."""
    orig = store.commit

    def commit():
        snap = bytes(store.payload)
        run.attempts.append(snap)
        orig()
        run.last_ok = snap
        run.attempts = []

    store.commit = commit
