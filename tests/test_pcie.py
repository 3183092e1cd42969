"""The PCIe card kit (``boards/pcie.py``): the chip behind AXI4-Stream ports answers frames with
``TLAST`` on the last byte, and ``symspike build --board nitefury-ii`` writes the Verilog, the
Vivado script, the constraints and the README (the vendor's tools themselves do not run
here)."""

from __future__ import annotations

import struct

from amaranth.sim import Simulator

from symspike.boards.pcie import AxisChipTop, pcie_config
from symspike.firmware import protocol as P
from symspike.hdl.chip import id_block
from symspike.host.cli import main

SMALL = dict(n_exc=8, lanes=4, pipelines=1, encoder_lanes=1)


def test_axis_top_answers_frames_with_tlast():
    cfg = pcie_config(**SMALL)
    dut = AxisChipTop(cfg)
    sim = Simulator(dut)
    answers = []

    async def clock(ctx):
        while True:
            ctx.set(dut.aclk, 0)
            await ctx.delay(8e-9)
            ctx.set(dut.aclk, 1)
            await ctx.delay(8e-9)

    async def bench(ctx):
        ctx.set(dut.aresetn, 0)
        for _ in range(4):
            await ctx.tick()
        ctx.set(dut.aresetn, 1)
        ctx.set(dut.m_axis_tready, 1)
        parser = P.FrameParser()
        for seq, (type_, payload) in enumerate([(P.Type.IDENTIFY, b""),
                                                (P.Type.READ_REG, struct.pack("<H", P.Reg.MAGIC))]):
            data = P.encode(type_, seq, payload)
            i = 0
            for _ in range(5000):
                ctx.set(dut.s_axis_tvalid, int(i < len(data)))
                if i < len(data):
                    ctx.set(dut.s_axis_tdata, data[i])
                took = i < len(data) and ctx.get(dut.s_axis_tready)
                got = ctx.get(dut.m_axis_tvalid)
                byte, last = ctx.get(dut.m_axis_tdata), ctx.get(dut.m_axis_tlast)
                await ctx.tick()
                i += bool(took)
                if got:
                    frames = parser.feed(bytes([byte]))
                    assert bool(last) == bool(frames), "TLAST must end each answer"
                    if frames:
                        answers.extend(frames)
                        break
            ctx.set(dut.s_axis_tvalid, 0)

    sim.add_process(clock)
    sim.add_testbench(bench)
    sim.run_until(5e-4)
    assert [(f.type, f.seq) for f in answers] == [(P.Type.ACK, 0), (P.Type.ACK, 1)]
    assert answers[0].payload == id_block(cfg)
    assert answers[1].payload == struct.pack("<I", P.MAGIC)


def test_build_writes_the_kit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYMSPIKE_BUILD", str(tmp_path))
    assert main(["build", "--board", "nitefury-ii", "-N", "8", "-L", "4", "-P", "1",
                 "--encoder-lanes", "1"]) == 0
    out = capsys.readouterr().out
    assert "Vivado (not run here)" in out
    kit = tmp_path / "boards" / "nitefury-ii"
    verilog = (kit / "symspike_axis.v").read_text()
    assert "module symspike_axis(" in verilog
    for port in ("s_axis_tdata", "s_axis_tready", "m_axis_tlast", "aresetn", "aclk"):
        assert port in verilog
    xdc = (kit / "symspike_xdma.xdc").read_text()
    assert "PACKAGE_PIN F6 [get_ports pcie_refclk_p]" in xdc     # from amaranth-boards
    assert "PACKAGE_PIN J1 [get_ports pcie_perst_n]" in xdc
    tcl = (kit / "symspike_xdma.tcl").read_text()
    assert "xilinx.com:ip:xdma" in tcl and "-reference symspike_axis" in tcl
    assert "CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {62.500}" in tcl
    # Another clock from the clocking wizard: the UART divisor follows.
    assert main(["build", "--board", "nitefury-ii", "-N", "8", "-L", "4", "-P", "1",
                 "--encoder-lanes", "1", "--freq", "50"]) == 0
    assert "at 50 MHz" in capsys.readouterr().out
    assert "CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {50.000}" in (kit / "symspike_xdma.tcl").read_text()
    readme = (kit / "README.md").read_text()
    assert "pcie:///dev/xdma0" in readme and "not run where these" in readme


def test_pcie_card_cannot_be_programmed_here(capsys):
    assert main(["build", "--board", "nitefury-ii", "--program"]) == 2
    assert "the vendor's tools build and load" in capsys.readouterr().err
