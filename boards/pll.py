"""Phase-locked loops of the two FPGA families: divider search and the clock domain they drive.

The dividers are found within the limits Project Trellis' ``ecppll`` and IceStorm's ``icepll``
use: the output frequency closest to the one asked for; among equals, on the ECP5 the VCO
nearest the middle of its range, on the iCE40 the first found. For the boards' clocks the
parameters are those the two tools print (``tests/test_pll.py``). :func:`ecp5_pll` and :func:`ice40_pll`
return the parameters; :class:`PllClock` instantiates the primitive (``EHXPLLL`` or
``SB_PLL40_CORE``) and a ``sync`` domain held in reset until the loop has locked.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["PllError", "Ecp5Pll", "Ice40Pll", "ecp5_pll", "ice40_pll", "PllClock"]


class PllError(ValueError):
    """No divider setting reaches the frequency within the PLL's limits."""


def _check_mhz(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of MHz, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Ecp5Pll:
    """``EHXPLLL`` dividers (``CLKOP`` output fed back): ``f_out = f_in / clki_div ·
    clkfb_div``, VCO ``f_out · clkop_div``."""

    f_in_mhz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def f_pfd_mhz(self) -> float:
        return self.f_in_mhz / self.clki_div

    @property
    def f_out_mhz(self) -> float:
        return self.f_pfd_mhz * self.clkfb_div

    @property
    def f_vco_mhz(self) -> float:
        return self.f_out_mhz * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        # As ecppll writes it for a zero-degree output fed back.
        return (self.clkop_div - 1) // 2

    def parameters(self) -> dict:
        """The instance's parameters (``p_…`` without the prefix)."""
        return {
            "PLLRST_ENA": "DISABLED", "INTFB_WAKE": "DISABLED", "STDBY_ENABLE": "DISABLED",
            "DPHASE_SOURCE": "DISABLED", "OUTDIVIDER_MUXA": "DIVA", "OUTDIVIDER_MUXB": "DIVB",
            "OUTDIVIDER_MUXC": "DIVC", "OUTDIVIDER_MUXD": "DIVD",
            "CLKI_DIV": self.clki_div, "CLKOP_ENABLE": "ENABLED", "CLKOP_DIV": self.clkop_div,
            "CLKOP_CPHASE": self.clkop_cphase, "CLKOP_FPHASE": 0, "FEEDBK_PATH": "CLKOP",
            "CLKFB_DIV": self.clkfb_div,
        }


@dataclass(frozen=True)
class Ice40Pll:
    """``SB_PLL40`` dividers (simple feedback): ``f_out = f_in · (divf + 1) /
    ((divr + 1) · 2^divq)``."""

    f_in_mhz: float
    divr: int
    divf: int
    divq: int

    @property
    def f_pfd_mhz(self) -> float:
        return self.f_in_mhz / (self.divr + 1)

    @property
    def f_vco_mhz(self) -> float:
        return self.f_pfd_mhz * (self.divf + 1)

    @property
    def f_out_mhz(self) -> float:
        return self.f_vco_mhz / (1 << self.divq)

    @property
    def filter_range(self) -> int:
        # The loop filter setting for the PFD frequency (iCE40 sysCLOCK PLL design guide).
        for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
            if self.f_pfd_mhz < limit:
                return value
        return 6

    def parameters(self) -> dict:
        """The instance's parameters (``p_…`` without the prefix)."""
        return {"FEEDBACK_PATH": "SIMPLE", "DIVR": self.divr, "DIVF": self.divf,
                "DIVQ": self.divq, "FILTER_RANGE": self.filter_range}


def ecp5_pll(f_in_mhz: float, f_out_mhz: float) -> Ecp5Pll:
    """The ``EHXPLLL`` dividers whose output is closest to ``f_out_mhz``.

    Limits: input 8–400 MHz, phase detector 3.125–400 MHz, VCO 400–800 MHz, output
    10–400 MHz.

    Raises
    ------
    PllError
        If a frequency is outside the PLL's range.
    """
    f_in, f_out = _check_mhz("f_in_mhz", f_in_mhz), _check_mhz("f_out_mhz", f_out_mhz)
    if not 8 <= f_in <= 400:
        raise PllError(f"the ECP5 PLL takes 8 to 400 MHz in, not {f_in:g} MHz")
    if not 10 <= f_out <= 400:
        raise PllError(f"the ECP5 PLL makes 10 to 400 MHz, not {f_out:g} MHz")
    best, best_err = None, None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            for clkop in range(1, 129):
                vco = out * clkop
                if not 400 <= vco <= 800:
                    continue
                # Ties go to the VCO nearest the middle of its range, as in ecppll.
                err = (abs(out - f_out), abs(vco - 600))
                if best is None or err < best_err:
                    best, best_err = Ecp5Pll(f_in, clki, clkfb, clkop), err
    if best is None:
        raise PllError(f"no ECP5 PLL setting makes {f_out:g} MHz from {f_in:g} MHz")
    return best


def ice40_pll(f_in_mhz: float, f_out_mhz: float) -> Ice40Pll:
    """The ``SB_PLL40`` dividers (simple feedback) whose output is closest to ``f_out_mhz``.

    Limits: input 10–133 MHz, phase detector 10–133 MHz, VCO 533–1066 MHz, output
    16–275 MHz.

    Raises
    ------
    PllError
        If a frequency is outside the PLL's range.
    """
    f_in, f_out = _check_mhz("f_in_mhz", f_in_mhz), _check_mhz("f_out_mhz", f_out_mhz)
    if not 10 <= f_in <= 133:
        raise PllError(f"the iCE40 PLL takes 10 to 133 MHz in, not {f_in:g} MHz")
    if not 16 <= f_out <= 275:
        raise PllError(f"the iCE40 PLL makes 16 to 275 MHz, not {f_out:g} MHz")
    best, best_err = None, None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                err = abs(out - f_out)
                if best is None or err < best_err:
                    best, best_err = Ice40Pll(f_in, divr, divf, divq), err
    if best is None:
        raise PllError(f"no iCE40 PLL setting makes {f_out:g} MHz from {f_in:g} MHz")
    return best


class PllClock(Elaboratable):
    """Drives clock domain ``domain`` at ``pll.f_out_mhz`` from a board clock through a PLL.

    The domain (defined by the parent, as Amaranth wants domains defined above their users)
    is held in reset until the PLL reports lock (and while ``reset`` is high), released
    synchronously. nextpnr derives the clock's frequency constraint from the input clock's
    and the dividers.

    Parameters
    ----------
    pll : Ecp5Pll or Ice40Pll
        The dividers (:func:`ecp5_pll`, :func:`ice40_pll`).
    clk_in : Signal
        The board clock, from its input buffer.
    reset : Signal, optional
        An asynchronous reset request (a button), active high.
    domain : str
        The clock domain driven.
    pad : bool
        iCE40 only: ``clk_in`` is the clock pin itself (an I/O port, not a buffered signal),
        and the PLL takes it through ``SB_PLL40_PAD``. The iCE40's PLL sits in the I/O tile of
        its clock pin, so a pin that feeds the PLL cannot also have an input buffer.
    """

    def __init__(self, pll, clk_in, reset=None, *, domain: str = "sync", pad: bool = False):
        if not isinstance(pll, (Ecp5Pll, Ice40Pll)):
            self._MustUse__silence = True   # never built: no "unused elaboratable" warning
            raise TypeError(f"pll must be an Ecp5Pll or Ice40Pll, not {type(pll).__name__}")
        self._pll = pll
        self._clk_in = clk_in
        self._reset = reset
        self._domain = domain
        if pad and not isinstance(pll, Ice40Pll):
            self._MustUse__silence = True
            raise ValueError("pad: only the iCE40 PLL takes its clock pin directly")
        self._pad = pad
        self.locked = Signal()

    @property
    def pll(self):
        return self._pll

    def elaborate(self, platform):
        m = Module()
        clk = Signal()
        params = {f"p_{k}": v for k, v in self._pll.parameters().items()}
        if isinstance(self._pll, Ecp5Pll):
            m.submodules.pll = Instance(
                "EHXPLLL", a_FREQUENCY_PIN_CLKI=f"{self._pll.f_in_mhz:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self._pll.f_out_mhz:g}", a_ICP_CURRENT="12",
                a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                **params, i_CLKI=self._clk_in, i_CLKFB=clk, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_CLKOP=clk,
                o_LOCK=self.locked)
        elif self._pad:
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", **params, i_PACKAGEPIN=self._clk_in, i_RESETB=1,
                i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=self.locked)
        else:
            m.submodules.pll = Instance(
                "SB_PLL40_CORE", **params, i_REFERENCECLK=self._clk_in, i_RESETB=1,
                i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=self.locked)
        m.d.comb += ClockSignal(self._domain).eq(clk)
        hold = ~self.locked if self._reset is None else (~self.locked | self._reset)
        m.submodules.reset_sync = ResetSynchronizer(hold, domain=self._domain)
        return m
