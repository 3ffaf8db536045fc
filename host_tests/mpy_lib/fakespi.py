# A recording SPI bus for driver framing tests: logs every frame sent (as bytes) and answers
# from a callable, without allocating in write_readinto beyond the log it was asked to keep.


class FakeSPI:
    def __init__(self, answer=None, log=True):
        self.frames = []
        self.cs_log = []
        self._answer = answer
        self._log = log

    def write_readinto(self, tx, rx):
        if self._log:
            self.frames.append(bytes(tx))
        for i in range(len(rx)):
            rx[i] = 0
        if self._answer:
            self._answer(tx, rx)

    def cs(self, level):
        if self._log:
            self.cs_log.append(level)
