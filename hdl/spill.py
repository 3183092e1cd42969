"""An output register that spills into a small queue while its consumer stalls.

A pipeline whose stages all advance on one enable, the consumer's ``ready``, carries that
enable to every register and memory port it has: at 16 or 32 lanes the wire is long and
slow. With a :class:`SpillRegister` at its end the pipeline runs freely instead. Its issue
stage counts on room: it starts a beat only while :attr:`~SpillRegister.level` leaves space
for every beat already in flight (:meth:`SpillRegister.room_for`), a test on registers alone,
and the consumer's ``ready`` reaches only this unit's output register and queue pointers.
"""

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

__all__ = ["SpillRegister"]


class SpillRegister(wiring.Component):
    """A stream register backed by a queue of ``depth`` beats.

    While the consumer takes every beat, a beat on ``i`` is on ``o`` the next cycle, from a
    register, as through a plain stream register; while it does not, beats wait in the queue
    and leave it in order. A beat is never refused while there is room (``i.ready`` is low
    only when the queue is full).

    Parameters
    ----------
    shape : shape-like
        The payload's shape.
    depth : int
        Beats the queue holds besides the register; at least 1.

    Members
    -------
    i : ``In(stream.Signature(shape))``
        Beats in. ``i.ready``: the queue is not full.
    o : ``Out(stream.Signature(shape))``
        Beats out, from a register.
    level : ``Out(range(depth + 1))``
        Beats in the queue (not counting the register): a register.
    """

    def __init__(self, shape, depth: int):
        if isinstance(depth, bool) or not isinstance(depth, int):
            self._MustUse__silence = True
            raise TypeError(f"depth must be an integer, not {type(depth).__name__}")
        if depth < 1:
            self._MustUse__silence = True
            raise ValueError(f"depth must be at least 1, not {depth}")
        self._shape = shape
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @property
    def depth(self) -> int:
        """Beats the queue holds besides the register."""
        return self._depth

    def room_for(self, in_flight: int):
        """High while ``in_flight`` more beats, arriving whatever the consumer does, would
        all find room: ``level ≤ depth − in_flight``. A producer that starts a beat only on
        this, counting the one it starts and every one it has started that is not yet on
        ``i``, never finds ``i.ready`` low."""
        if in_flight > self._depth:
            raise ValueError(f"{in_flight} beats in flight need a queue of at least "
                             f"{in_flight}, not {self._depth}")
        return self.level <= self._depth - in_flight

    def elaborate(self, platform):
        m = Module()
        m.submodules.queue = queue = SyncFIFO(width=len(Value.cast(self.i.payload)),
                                              depth=self._depth)
        o_valid = Signal()
        o_payload = Signal(self._shape)
        # The register takes a beat when it is empty or being emptied: the oldest in the
        # queue, or else the incoming one; an incoming beat it cannot take is queued.
        load = ~o_valid | self.o.ready
        direct = load & ~queue.r_rdy
        with m.If(load):
            m.d.sync += o_valid.eq(queue.r_rdy | self.i.valid)
            with m.If(queue.r_rdy):
                m.d.sync += o_payload.eq(queue.r_data)
            with m.Else():
                m.d.sync += o_payload.eq(self.i.payload)
        m.d.comb += [
            queue.r_en.eq(load),
            queue.w_en.eq(self.i.valid & ~direct),
            queue.w_data.eq(self.i.payload),
            # A beat that goes straight to the register finds the queue empty: ``ready`` is
            # the queue's, a compare of its level register.
            self.i.ready.eq(queue.w_rdy),
            self.o.valid.eq(o_valid),
            self.o.payload.eq(o_payload),
            self.level.eq(queue.level),
        ]
        return m
