"""Device targets: the FPGA, its limits, its clock and the network that is meant to fit it.

Two targets are defined:

``up5k``
    Lattice iCE40 UltraPlus UP5K in the SG48 package, as on the iCEBreaker board; the
    N = 100 network at 24 MHz (twice the board's 12 MHz oscillator, so the UART divides it
    exactly to 3 Mbaud).
``ecp5-85f``
    Lattice ECP5 LFE5U-85F in the CABGA381 package (speed grade 6), as on the ULX3S board;
    the N = 400 network at 100 MHz.

Device limits are the resource counts of ``reference/hardware-anchors.md`` section 2 (as
reported by nextpnr's device utilisation; cross-check with the vendor datasheets before
publishing). Flip-flops are one per logic cell / LUT4 on both families.

The default configurations are starting points chosen from the memory and DSP budgets:

* ``up5k``: ``lanes = 4`` (the four 16-bit single-port SPRAMs give about four weight
  read-modify-writes per cycle), ``pipelines = 1`` (the fewest DSPs; the LIF core still needs
  more multipliers than the eight ``SB_MAC16``), ``encoder_lanes = 1``.
* ``ecp5-85f``: ``lanes = 32``, ``pipelines = 4`` and ``encoder_lanes = 4``. Each of the 32
  banks of the 8-bit input→E weights of N = 400 holds 784 · ⌈400/32⌉ = 10 192 words, five
  ``DP16KD`` in their 2048 × 9 shape: 160 of the 208 (the whole core takes 202). Each
  synapse lane has one ``MULT18X18D`` (32 input→E, 8 E→C lanes). 64 lanes would need 192
  ``DP16KD`` for these weights alone and 234 for the core, more than the device has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..firmware.config import NetworkConfig, preset

__all__ = ["DeviceLimits", "Target", "TARGETS", "BOARDS", "get_target", "board_target",
           "load_platform"]


@dataclass(frozen=True)
class DeviceLimits:
    """Resource counts of one FPGA device.

    Parameters
    ----------
    lut : int
        4-input LUTs (iCE40 logic cells, ECP5 ``TRELLIS_COMB`` slots).
    ff : int
        Flip-flops.
    bram : int
        Block RAMs: iCE40 ``SB_RAM40_4K`` (4 kbit EBR) or ECP5 ``DP16KD`` (18 kbit EBR).
    spram : int
        iCE40 ``SB_SPRAM256KA`` (256 kbit, single-port); 0 where the family has none.
    dsp : int
        Multipliers: iCE40 ``SB_MAC16`` (16×16) or ECP5 ``MULT18X18D`` (18×18).
    bram_kbit : int
        Capacity of one block RAM in kbit.
    spram_kbit : int
        Capacity of one SPRAM in kbit.
    """

    lut: int
    ff: int
    bram: int
    spram: int
    dsp: int
    bram_kbit: int
    spram_kbit: int = 0

    def as_dict(self) -> dict:
        """The counts as ``{"LUT": …, "FF": …, "BRAM": …, "SPRAM": …, "DSP": …}``."""
        return {"LUT": self.lut, "FF": self.ff, "BRAM": self.bram, "SPRAM": self.spram,
                "DSP": self.dsp}


@dataclass(frozen=True)
class Target:
    """One device target: FPGA, package, clock and default network configuration.

    Parameters
    ----------
    name : str
        Target name used on the command line.
    family : str
        ``"ice40"`` or ``"ecp5"``: selects ``synth_<family>`` and ``nextpnr-<family>``.
    device : str
        Device name as the vendor writes it.
    package : str
        Package as nextpnr spells it (``--package``).
    nextpnr_device : tuple of str
        nextpnr options that select the device (and speed grade).
    board : str
        The board this target stands for.
    platform : str
        The ``amaranth-boards`` platform class of that board, ``module:Class``.
    clock_hz : float
        Clock frequency the gateware is meant to reach.
    n_exc : int
        Network size (excitatory neurons) of the default configuration.
    lanes, pipelines, encoder_lanes : int
        Hardware parallelism of the default configuration.
    limits : DeviceLimits
        Resource counts of the device.
    clock_pin : str
        The board's oscillator pin, a clock-capable one: the out-of-context unit builds put
        their clock there, since a clock on a pin nextpnr chooses may not reach the global
        clock network.
    """

    name: str
    family: str
    device: str
    package: str
    nextpnr_device: tuple
    board: str
    platform: str
    clock_hz: float
    n_exc: int
    lanes: int
    pipelines: int
    encoder_lanes: int
    limits: DeviceLimits = field(repr=False)
    clock_pin: str = ""

    @property
    def clock_mhz(self) -> float:
        return self.clock_hz / 1e6

    def config(self, *, n_exc: int | None = None, lanes: int | None = None,
               pipelines: int | None = None, encoder_lanes: int | None = None,
               **changes) -> NetworkConfig:
        """The target's network configuration, with optional overrides.

        Parameters
        ----------
        n_exc : int, optional
            Excitatory neurons (default: the target's).
        lanes, pipelines, encoder_lanes : int, optional
            Hardware parallelism (default: the target's).
        **changes
            Further :class:`~symspike.firmware.config.NetworkConfig` fields.

        Returns
        -------
        NetworkConfig
            ``preset(n_exc, …)`` with the target's clock and board.

        Raises
        ------
        ValueError
            If a value is not a valid configuration (e.g. lanes not a power of two).
        """
        return preset(
            self.n_exc if n_exc is None else n_exc,
            lanes=self.lanes if lanes is None else lanes,
            pipelines=self.pipelines if pipelines is None else pipelines,
            encoder_lanes=self.encoder_lanes if encoder_lanes is None else encoder_lanes,
            **{"clock_hz": self.clock_hz, "board": self.board, **changes},
        )

    def amaranth_platform(self):
        """An instance of the board's ``amaranth-boards`` platform.

        Raises
        ------
        ImportError
            If ``amaranth-boards`` is not installed.
        """
        return load_platform(self.platform)


#: The device targets by name.
TARGETS = {
    "up5k": Target(
        name="up5k",
        family="ice40",
        device="iCE40UP5K",
        package="sg48",
        nextpnr_device=("--up5k",),
        board="icebreaker",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
        clock_hz=24e6,
        n_exc=100,
        lanes=4,
        pipelines=1,
        encoder_lanes=1,
        limits=DeviceLimits(lut=5280, ff=5280, bram=30, spram=4, dsp=8, bram_kbit=4,
                            spram_kbit=256),
        clock_pin="35",         # the iCEBreaker's 12 MHz oscillator (IOB_25B_G3)
    ),
    "ecp5-85f": Target(
        name="ecp5-85f",
        family="ecp5",
        device="LFE5U-85F",
        package="CABGA381",
        nextpnr_device=("--85k", "--speed", "6"),
        board="ulx3s-85f",
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
        clock_hz=100e6,
        n_exc=400,
        lanes=32,
        pipelines=4,
        encoder_lanes=4,
        limits=DeviceLimits(lut=83640, ff=83640, bram=208, spram=0, dsp=156, bram_kbit=18),
        clock_pin="G2",         # the ULX3S's 25 MHz oscillator (PCLKT6_0)
    ),
}


def get_target(name: str) -> Target:
    """The target called ``name``.

    Raises
    ------
    ValueError
        If there is no such target; the message lists the known ones.
    """
    return _lookup(TARGETS, name, "target")


def load_platform(spec: str):
    """An instance of the ``amaranth-boards`` platform ``spec`` (``"module:Class"``).

    Raises
    ------
    ImportError
        If ``amaranth-boards`` is not installed.
    """
    import importlib
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)()


#: The targets by board name (``icebreaker`` → ``up5k``, ``ulx3s-85f`` → ``ecp5-85f``).
BOARDS = {t.board: t for t in TARGETS.values()}


def board_target(name: str) -> Target:
    """The device target of board ``name``.

    Raises
    ------
    ValueError
        If there is no such board; the message lists the known ones.
    """
    return _lookup(BOARDS, name, "board")


def _lookup(table: dict, name, what: str) -> Target:
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {name!r}; known {what}s: "
                         f"{', '.join(table)}") from None
