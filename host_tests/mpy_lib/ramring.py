# In-RAM stand-in for firmware/journal.py's Ring (same interface), for tests only:
# append(buf) -> seq, read(seq, buf) -> bool, first_seq, next_seq; the oldest record is
# overwritten when the ring is full.


class Ring:
    def __init__(self, path=None, rec_size=16, capacity=8):
        self.rec_size = rec_size
        self.capacity = capacity
        self._data = bytearray(rec_size * capacity)
        self.first_seq = 0
        self.next_seq = 0

    def append(self, buf):
        if len(buf) != self.rec_size:
            raise ValueError("record size")
        seq = self.next_seq
        o = (seq % self.capacity) * self.rec_size
        self._data[o:o + self.rec_size] = buf
        self.next_seq = seq + 1
        if self.next_seq - self.first_seq > self.capacity:
            self.first_seq = self.next_seq - self.capacity
        return seq

    def read(self, seq, buf):
        if not self.first_seq <= seq < self.next_seq:
            return False
        o = (seq % self.capacity) * self.rec_size
        buf[:self.rec_size] = self._data[o:o + self.rec_size]
        return True
