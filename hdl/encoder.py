"""Poisson encoder: turns the held image into one time step's input spikes (AER).

Bit-exact with the golden model (``sim/rng.py``, ``docs/formats.md`` "Input spikes"): in every
step the encoder walks the image's non-zero pixels in ascending pixel index; the ``m``-th of
them draws the next word of encoder lane ``m mod encoder_lanes`` (the upper 16 bits of the new
xorshift32 state) and spikes when ``word < floor(p · intensity · 2**16 · dt / 8000)``.

Architecture
------------
*Compacted image.* Zero pixels draw nothing, so the encoder never needs to see them: while an
image streams in, each non-zero pixel is appended as an ``(index, value)`` entry to a list held
in one :class:`~amaranth.lib.memory.Memory` whose row holds ``L = encoder_lanes`` entries, with
a write enable per entry. Entry ``m`` lies in row ``m // L``, column ``m mod L``, and column
``k`` *is* lane ``k``: reading one row per cycle feeds every lane its next pixel, so a step of
``n`` non-zero pixels takes about ``n / L`` cycles whatever the image's sparsity pattern.

*Exact rate compare.* The threshold ``floor(x · a / b)`` (``x = p · intensity`` and ``a / b``
the reduced fraction ``2**16 · dt / 8000``, 512/125 at dt = 0.5 ms) is never formed: for an
integer ``word``, ``word < floor(x·a/b)`` holds exactly when ``(word + 1) · b <= x · a``, so two
small products replace a division and are exact for every input (:class:`RateCompare`).

*Pipeline.* A row is read from the memory (stage 1), held in registers (stage 2: the rate
compare never starts at a block RAM's output), compared, and its hits held (stage 3).

*Spike output.* The hits of a row are held in a small register and leave lowest column first,
one per cycle, on the ``spikes`` stream; the next row is taken when the last hit of the current
one leaves. Rows without hits pass in one cycle, backpressure stalls the walk without dropping
or reordering spikes, and the lane states advance only when a row is taken, so a stall never
changes which word a pixel draws.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..firmware.config import NetworkConfig
from ..sim.rng import stream_seeds, xorshift32_py
from .arith import const_mul
from .xorshift import STATE_BITS, WORD_BITS, xorshift32_next, xorshift32_word

__all__ = ["PIXEL_BITS", "WALK_EXTRA", "PixelLayout", "rate_fraction", "RateCompare",
           "PoissonEncoder"]

#: Width of a pixel value.
PIXEL_BITS = 8
#: Cycles of a step's walk besides its rows and spike stalls, from ``step`` to ``done``.
WALK_EXTRA = 3


class PixelLayout(data.StructLayout):
    """Payload of the encoder's pixel stream.

    Fields
    ------
    value : ``unsigned(8)``
        Pixel value, 0…255.
    first : ``unsigned(1)``
        Marks pixel 0 of an image. Images of exactly ``n_input`` pixels may also follow each
        other without it; a set ``first`` restarts an interrupted image, so a lost pixel
        costs at most the image it belonged to.
    """

    def __init__(self):
        super().__init__({"value": unsigned(PIXEL_BITS), "first": unsigned(1)})


def _silence(elaboratable):
    # A constructor that rejects its arguments leaves an object nobody can use: without this
    # Amaranth would later warn that it was "created but never used".
    elaboratable._MustUse__silence = True


def rate_fraction(dt: float) -> Fraction:
    """The rate-threshold factor ``a / b = 2**16 · dt / 8000`` as a reduced fraction.

    ``floor(p · intensity · a / b)`` is the 16-bit spike threshold of pixel ``p``, the same
    rational number as :func:`symspike.sim.rng.rate_thresholds` uses.

    Parameters
    ----------
    dt : float
        Time step in ms.
    """
    if isinstance(dt, bool) or not isinstance(dt, (int, float, Fraction)):
        raise TypeError(f"dt must be a number, not {dt!r}")
    if not dt > 0:
        raise ValueError(f"dt must be positive, not {dt!r}")
    dt = Fraction(dt).limit_denominator(1 << 20)
    return Fraction((1 << 16) * dt.numerator, 8000 * dt.denominator)


class RateCompare(wiring.Component):
    """Combinational Poisson spike decision of ``lanes`` pixels at one intensity.

    ``hits[k]`` is ``word < floor(pixels[k] · intensity · a / b)`` for the reduced fraction
    ``a / b`` of :func:`rate_fraction` and lane ``k``'s random word, computed as
    ``(word + 1) · b <= pixels[k] · intensity · a``: exact for every pixel, intensity and
    word, including the thresholds at or above ``2**16`` (every word spikes). The word side,
    ``scaled[k] = (word + 1) · b`` (:meth:`scale`), is an input: the encoder computes it a
    draw ahead, in registers.

    Parameters
    ----------
    dt : float
        Time step in ms.
    lanes : int
        Number of pixels compared in parallel.
    intensity_bits : int
        Width of the intensity input.

    Members
    -------
    intensity : ``In(intensity_bits)``
        Input intensity (pixel ``p`` fires at ``p / 8 · intensity`` Hz).
    pixels : ``In(data.ArrayLayout(8, lanes))``
        Pixel values.
    scaled : ``In(data.ArrayLayout(scaled_bits, lanes))``
        Each lane's random word as ``(word + 1) · b``.
    hits : ``Out(lanes)``
        Spike decisions.
    """

    def __init__(self, dt: float, lanes: int = 1, intensity_bits: int = 6):
        try:
            for name, value in (("lanes", lanes), ("intensity_bits", intensity_bits)):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise TypeError(f"{name} must be an int, not {value!r}")
                if value < 1:
                    raise ValueError(f"{name} must be ≥ 1, not {value}")
            self._fraction = rate_fraction(dt)
        except (TypeError, ValueError):
            _silence(self)
            raise
        self._lanes = lanes
        self._intensity_bits = intensity_bits
        super().__init__({
            "intensity": In(intensity_bits),
            "pixels": In(data.ArrayLayout(unsigned(PIXEL_BITS), lanes)),
            "scaled": In(data.ArrayLayout(unsigned(self.scaled_bits), lanes)),
            "hits": Out(lanes),
        })

    @property
    def fraction(self) -> Fraction:
        """The reduced fraction ``a / b`` of the threshold."""
        return self._fraction

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def intensity_bits(self) -> int:
        return self._intensity_bits

    @property
    def scaled_bits(self) -> int:
        """Width of a scaled word, ``(2**16) · b`` at most."""
        return ((1 << WORD_BITS) * self._fraction.denominator).bit_length()

    def scale(self, word):
        """``(word + 1) · b``, the word side of the compare (an int or a Value). A Value is
        multiplied by shifted copies in logic: a DSP's fixed place and delay put it on the
        slowest path of the chip."""
        b = self._fraction.denominator
        if isinstance(word, int):
            return (word + 1) * b
        return const_mul(Value.cast(word) + 1, b)

    def elaborate(self, platform):
        m = Module()
        a = self._fraction.numerator
        for k in range(self._lanes):
            m.d.comb += self.hits[k].eq(self.scaled[k] <= self.pixels[k] * self.intensity * a)
        return m


class PoissonEncoder(wiring.Component):
    """Poisson encoder of the chip: held image, ``encoder_lanes`` xorshift32 lanes, AER output.

    Parameters
    ----------
    cfg : NetworkConfig
        Network configuration; ``n_input``, ``dt``, ``intensity_max`` and ``encoder_lanes``
        are used.
    seed : int
        Run seed whose encoder streams (:func:`symspike.sim.rng.stream_seeds`) are the lane
        states after reset; ``seeds``/``seeds_load`` replace them at run time.

    Members
    -------
    pixels : ``In(stream.Signature(PixelLayout()))``
        Image pixels in pixel order (row-major 28×28). The image held is complete once
        ``n_input`` pixels have arrived; accepted only while idle (``busy`` low, no ``step``).
    image_valid : ``Out(1)``
        A complete image is held. A step without one encodes an empty image (no draws).
    nonzero : ``Out(range(n_input + 1))``
        Non-zero pixels of the image loaded so far; once it is complete, the number of words
        each step draws.
    intensity : ``In(range(intensity_max + 1))``
        Input intensity, sampled by ``step``. Any value of the port's width is encoded
        exactly; intensity 0 never fires but still draws a word per non-zero pixel.
    step : ``In(1)``
        Strobe: encode one time step. Ignored while ``busy``.
    busy : ``Out(1)``
        A step is being encoded.
    done : ``Out(1)``
        One-cycle pulse when the step is finished: every spike of it has been accepted on
        ``spikes`` and ``busy`` falls on the next cycle.
    spikes : ``Out(stream.Signature(range(n_input)))``
        Indices of the pixels that spike in this step (AER), strictly ascending.
    seeds : ``In(data.ArrayLayout(32, encoder_lanes))``
        New lane states (non-zero), loaded by ``seeds_load``.
    seeds_load : ``In(1)``
        Strobe: load ``seeds`` into the lanes. Ignored while ``busy``.
    states : ``Out(data.ArrayLayout(32, encoder_lanes))``
        The lane states now (the golden model's ``rng[:encoder_lanes]`` between steps), so
        the host can save them with the weights and a resumed run draws the same spikes.
    """

    def __init__(self, cfg: NetworkConfig, *, seed: int = 0):
        try:
            if not isinstance(cfg, NetworkConfig):
                raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed must be an int, not {seed!r}")
            if seed < 0:
                raise ValueError(f"seed must be non-negative, not {seed}")
        except (TypeError, ValueError):
            _silence(self)
            raise
        self._cfg = cfg
        self._seed = int(seed)
        self._lanes = cfg.encoder_lanes
        self._n_input = cfg.n_input
        self._init_states = [int(s) for s in stream_seeds(self._seed, self._lanes)["encoder"]]
        super().__init__({
            "pixels": In(stream.Signature(PixelLayout())),
            "image_valid": Out(1),
            "nonzero": Out(range(self._n_input + 1)),
            "intensity": In(range(cfg.intensity_max + 1)),
            "step": In(1),
            "busy": Out(1),
            "done": Out(1),
            "spikes": Out(stream.Signature(range(self._n_input))),
            "seeds": In(data.ArrayLayout(unsigned(STATE_BITS), self._lanes)),
            "seeds_load": In(1),
            "states": Out(data.ArrayLayout(unsigned(STATE_BITS), self._lanes),
                          init=self._init_states),
        })

    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def lanes(self) -> int:
        """Number of xorshift32 lanes: pixels drawn per cycle."""
        return self._lanes

    @property
    def seed(self) -> int:
        """Run seed of the lane states after reset."""
        return self._seed

    @property
    def init_states(self) -> tuple:
        """Lane states after reset."""
        return tuple(self._init_states)

    @property
    def depth(self) -> int:
        """Rows of the compacted-image memory."""
        return -(-self._n_input // self._lanes)

    def elaborate(self, platform):
        m = Module()
        n, lanes = self._n_input, self._lanes
        lane_bits = exact_log2(lanes)
        index_shape = unsigned(ceil_log2(n))
        entry = data.StructLayout({"index": index_shape, "value": unsigned(PIXEL_BITS)})

        m.submodules.memory = memory = Memory(
            shape=data.ArrayLayout(entry, lanes), depth=self.depth, init=[])
        wr = memory.write_port(granularity=1)
        rd = memory.read_port(transparent_for=())
        m.submodules.rate = rate = RateCompare(self._cfg.dt, lanes, len(self.intensity))

        walking = Signal()
        image_valid = Signal()
        n_nz = Signal(range(n + 1))
        m.d.comb += [
            self.busy.eq(walking),
            self.image_valid.eq(image_valid),
            self.nonzero.eq(n_nz),
        ]

        # -- Loading: append each non-zero pixel to the compacted list -----------------
        pix_next = Signal(range(n + 1))   # index of the next pixel; n: image complete
        # A step in the same cycle samples the pixel count, so the image is frozen then too.
        m.d.comb += self.pixels.ready.eq(~walking & ~self.step)
        accept = self.pixels.valid & self.pixels.ready
        restart = self.pixels.payload.first | (pix_next == n)
        index = Signal(range(n))
        slot = Signal(range(n))
        nonzero = self.pixels.payload.value != 0
        m.d.comb += [
            index.eq(Mux(restart, 0, pix_next)),
            slot.eq(Mux(restart, 0, n_nz)),
            wr.addr.eq(slot[lane_bits:]),
        ]
        for k in range(lanes):
            lane = slot[:lane_bits] if lane_bits else 0
            m.d.comb += [
                wr.data[k].index.eq(index),
                wr.data[k].value.eq(self.pixels.payload.value),
                wr.en[k].eq(accept & nonzero & (lane == k)),
            ]
        with m.If(accept):
            m.d.sync += [
                pix_next.eq(index + 1),
                n_nz.eq(slot + nonzero),
                image_valid.eq(index == n - 1),
            ]

        # -- Walk, stage 1: one row of entries per cycle, one lane per column -----------
        intensity = Signal.like(self.intensity)
        left = Signal(range(n + 1))           # entries not yet read
        row = Signal(range(self.depth + 1))
        s1_valid = Signal()
        s1_count = Signal(range(lanes + 1))   # valid columns of the row read

        # -- Walk, stage 2: the row in registers. A block RAM's output is slow (no output
        # register in the ECP5's DP16KD as Yosys maps it): the rate compare starts here.
        s2_valid = Signal()
        s2_count = Signal(range(lanes + 1))
        s2_row = Signal(data.ArrayLayout(entry, lanes))
        states = self.states
        # Each lane's state after its next draw, kept a step ahead in registers so that the
        # draw's word comes from a register (the xorshift is three levels of logic).
        ahead = Signal(data.ArrayLayout(unsigned(STATE_BITS), lanes),
                       init=[xorshift32_py(s) for s in self._init_states])
        # ... and that draw's word scaled for the rate compare, so that neither the
        # xorshift nor the word's multiplier lies before the compare.
        scaled = Signal(data.ArrayLayout(unsigned(rate.scaled_bits), lanes),
                        init=[rate.scale(xorshift32_py(s) >> (STATE_BITS - WORD_BITS))
                              for s in self._init_states])
        rescale = Signal()      # new seeds: the scaled words follow a cycle later

        m.d.comb += rate.intensity.eq(intensity)
        hits = Signal(lanes)
        for k in range(lanes):
            m.d.comb += [
                rate.pixels[k].eq(s2_row[k].value),
                rate.scaled[k].eq(scaled[k]),
                hits[k].eq(rate.hits[k] & (k < s2_count)),
            ]

        # -- Walk, stage 3: the row's hits leave lowest column first --------------------
        s3_hits = Signal(lanes)
        s3_index = Signal(data.ArrayLayout(index_shape, lanes))
        first_hit = Signal(range(lanes))
        for k in reversed(range(lanes)):
            with m.If(s3_hits[k]):
                m.d.comb += first_hit.eq(k)
        others = (s3_hits & (s3_hits - 1))[:lanes]   # s3_hits without its lowest bit
        m.d.comb += [
            self.spikes.valid.eq(s3_hits.any()),
            self.spikes.payload.eq(s3_index[first_hit]),
        ]
        emit = self.spikes.valid & self.spikes.ready
        s3_free = ~s3_hits.any() | (emit & ~others.any())
        take = s2_valid & s3_free
        move = s1_valid & (~s2_valid | take)
        advance = ~s1_valid | move

        with m.If(emit):
            m.d.sync += s3_hits.eq(others)
        with m.If(take):
            m.d.sync += s3_hits.eq(hits)
            for k in range(lanes):
                m.d.sync += s3_index[k].eq(s2_row[k].index)
                # Only the lanes that drew a word advance: the row's tail is past the list.
                with m.If(k < s2_count):
                    nxt = xorshift32_next(ahead[k])
                    m.d.sync += [states[k].eq(ahead[k]), ahead[k].eq(nxt),
                                 scaled[k].eq(rate.scale(xorshift32_word(nxt)))]
        with m.If(move):
            m.d.sync += [s2_valid.eq(1), s2_row.eq(rd.data), s2_count.eq(s1_count)]
        with m.Elif(take):
            m.d.sync += s2_valid.eq(0)

        chunk = Mux(left >= lanes, lanes, left)
        m.d.comb += [
            rd.addr.eq(row),
            rd.en.eq(advance),   # a stalled row keeps its read data
        ]
        with m.If(advance):
            with m.If(walking & (left != 0)):
                m.d.sync += [
                    s1_valid.eq(1),
                    s1_count.eq(chunk),
                    left.eq(left - chunk),
                    row.eq(row + 1),
                ]
            with m.Else():
                m.d.sync += s1_valid.eq(0)

        # -- Control ---------------------------------------------------------------------
        finished = walking & (left == 0) & ~s1_valid & ~s2_valid & ~s3_hits.any()
        m.d.comb += self.done.eq(finished)
        with m.If(~walking):
            with m.If(self.step):
                m.d.sync += [
                    walking.eq(1),
                    left.eq(Mux(image_valid, n_nz, 0)),
                    row.eq(0),
                    intensity.eq(self.intensity),
                ]
            with m.If(self.seeds_load):
                m.d.sync += [states.eq(self.seeds), rescale.eq(1)]
                m.d.sync += [ahead[k].eq(xorshift32_next(self.seeds[k])) for k in range(lanes)]
        # New seeds come from the host's register write: their scaled words are taken from
        # the lane states a cycle later. A walk's first draw is three cycles after its step.
        with m.If(rescale):
            m.d.sync += rescale.eq(0)
            m.d.sync += [scaled[k].eq(rate.scale(xorshift32_word(ahead[k])))
                         for k in range(lanes)]
        with m.Elif(finished):
            m.d.sync += walking.eq(0)
        return m
