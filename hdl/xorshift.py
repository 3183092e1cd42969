"""The xorshift32 step in gateware: the source of every random word on the chip.

The chip's three random streams (Poisson encoder lanes, teacher, learning events; see
``sim/rng.py``) all advance a 32-bit xorshift32 state once per draw and use the *upper* 16
bits of the new state as the word. One step is three shift-XOR stages, a pure XOR network
without carries, so it costs a few LUT levels and needs no pipelining at the chip's clock.

:func:`xorshift32_next` gives the next state as an expression, for units that keep their own
state registers; :class:`Xorshift32` wraps it as a combinational component.
"""

from amaranth.hdl import Module, Value, ValueCastable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["STATE_BITS", "WORD_BITS", "xorshift32_next", "xorshift32_word", "Xorshift32"]

#: Width of a xorshift32 state.
STATE_BITS = 32
#: Width of a random word: the upper half of the new state.
WORD_BITS = 16


def _as_state(state) -> Value:
    if not isinstance(state, (Value, ValueCastable)):
        raise TypeError(f"state must be an Amaranth value, not {state!r}")
    state = Value.cast(state)
    if len(state) != STATE_BITS:
        raise ValueError(f"state must be {STATE_BITS} bits wide, not {len(state)}")
    return state


def xorshift32_next(state) -> Value:
    """The next xorshift32 state of ``state``, combinationally.

    Parameters
    ----------
    state : Value
        A 32-bit value, the current state. A zero state is a fixed point of the generator;
        seeds from :func:`symspike.sim.rng.stream_seeds` are never zero.

    Returns
    -------
    Value
        A 32-bit expression: ``x ^= x << 13; x ^= x >> 17; x ^= x << 5``.
    """
    x = _as_state(state)
    # Left shifts widen an Amaranth value: truncate each stage back to 32 bits.
    x = (x ^ (x << 13))[:STATE_BITS]
    x = (x ^ (x >> 17))[:STATE_BITS]
    x = (x ^ (x << 5))[:STATE_BITS]
    return x


def xorshift32_word(next_state) -> Value:
    """The random word drawn with the new state ``next_state``: its upper 16 bits."""
    return _as_state(next_state)[STATE_BITS - WORD_BITS:]


class Xorshift32(wiring.Component):
    """Combinational xorshift32 step.

    Members
    -------
    state : ``In(32)``
        Current state.
    next : ``Out(32)``
        Next state.
    word : ``Out(16)``
        Random word of this draw, the upper 16 bits of ``next``.
    """

    state: In(STATE_BITS)
    next: Out(STATE_BITS)
    word: Out(WORD_BITS)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.next.eq(xorshift32_next(self.state)),
            self.word.eq(xorshift32_word(self.next)),
        ]
        return m
