"""PLL divider search (``boards/pll.py``): the boards' clocks get the dividers the vendor-flow
tools print, every result is within the PLL's limits, and impossible clocks are refused."""

from __future__ import annotations

import pytest
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Module, Signal

from symspike.boards.pll import (Ecp5Pll, Ice40Pll, PllClock, PllError, ecp5_pll,
                                 ice40_pll)


def test_ulx3s_100_mhz_as_ecppll_prints_it():
    # `ecppll -i 25 -o 100`: CLKI_DIV 1, CLKFB_DIV 4, CLKOP_DIV 6, CLKOP_CPHASE 2, VCO 600.
    pll = ecp5_pll(25, 100)
    assert (pll.clki_div, pll.clkfb_div, pll.clkop_div, pll.clkop_cphase) == (1, 4, 6, 2)
    assert pll.f_out_mhz == 100 and pll.f_vco_mhz == 600


def test_icebreaker_24_mhz_as_icepll_prints_it():
    # `icepll -i 12 -o 24`: DIVR 0, DIVF 63, DIVQ 5, FILTER_RANGE 1, VCO 768.
    pll = ice40_pll(12, 24)
    assert (pll.divr, pll.divf, pll.divq, pll.filter_range) == (0, 63, 5, 1)
    assert pll.f_out_mhz == 24 and pll.f_vco_mhz == 768


@pytest.mark.parametrize("f_out", [10, 12.5, 33, 48, 50, 62.5, 75, 81, 100, 133, 200, 400])
def test_ecp5_results_are_within_limits(f_out):
    pll = ecp5_pll(25, f_out)
    assert 3.125 <= pll.f_pfd_mhz <= 400 and 400 <= pll.f_vco_mhz <= 800
    assert abs(pll.f_out_mhz - f_out) <= 0.03 * f_out


@pytest.mark.parametrize("f_out", [16, 18, 24, 30, 36, 48, 60, 100, 200, 275])
def test_ice40_results_are_within_limits(f_out):
    pll = ice40_pll(12, f_out)
    assert 10 <= pll.f_pfd_mhz <= 133 and 533 <= pll.f_vco_mhz <= 1066
    assert abs(pll.f_out_mhz - f_out) <= 0.03 * f_out


@pytest.mark.parametrize("make, f_in, f_out, message", [
    (ecp5_pll, 25, 5, "makes 10 to 400 MHz"),
    (ecp5_pll, 4, 100, "takes 8 to 400 MHz"),
    (ice40_pll, 12, 8, "makes 16 to 275 MHz"),
    (ice40_pll, 200, 24, "takes 10 to 133 MHz"),
])
def test_impossible_clocks_are_refused(make, f_in, f_out, message):
    with pytest.raises(PllError, match=message):
        make(f_in, f_out)


def test_pad_input_is_for_the_ice40():
    with pytest.raises(ValueError, match="only the iCE40 PLL"):
        PllClock(ecp5_pll(25, 100), Signal(), pad=True)


def test_bad_parameters():
    with pytest.raises(TypeError, match="number of MHz"):
        ecp5_pll("25", 100)
    with pytest.raises(ValueError, match="positive"):
        ice40_pll(12, 0)
    with pytest.raises(TypeError, match="Ecp5Pll or Ice40Pll"):
        PllClock((1, 4, 6), Signal())


@pytest.mark.parametrize("pll, cell, params", [
    (ecp5_pll(25, 100), "EHXPLLL", ("CLKFB_DIV", "CLKOP_DIV", "FEEDBK_PATH")),
    (ice40_pll(12, 24), "SB_PLL40_CORE", ("DIVF", "DIVQ", "FILTER_RANGE")),
])
def test_pll_clock_instantiates_the_primitive(pll, cell, params):
    m = Module()
    m.domains.sync = ClockDomain("sync")
    clk_in = Signal()
    m.submodules.clock = clock = PllClock(pll, clk_in)
    assert isinstance(clock.pll, (Ecp5Pll, Ice40Pll))
    text = rtlil.convert(m, ports=[clk_in, clock.locked])
    assert f"cell \\{cell}" in text
    for name in params:
        assert f"parameter \\{name}" in text
