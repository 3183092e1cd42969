"""The chip for a PCIe card: Verilog of the stream-interface top and the files to add XDMA.

The Nitefury II (``amaranth-boards``' ``NitefuryIIPlatform``: Xilinx Artix-7 XC7A200T in an
M.2 slot) reaches the host through Xilinx's XDMA PCIe engine in AXI4-Stream mode, which only
the vendor's tools (Vivado) can build; they do not run here. ``symspike build --board
nitefury-ii`` therefore writes a kit to ``build/boards/nitefury-ii/`` instead of a bitstream:

``symspike_axis.v``
    The chip (:class:`~symspike.hdl.chip.ChipTop`) as Verilog behind :class:`AxisChipTop`: an
    8-bit AXI4-Stream slave for the host-to-card bytes (``s_axis_*``), an 8-bit AXI4-Stream
    master for the card-to-host bytes with ``TLAST`` ending each answer frame (``m_axis_*``),
    ``aclk`` and the active-low ``aresetn``, and ``busy`` for a LED.
``symspike_xdma.tcl``
    A Vivado script that makes the project and its block design: the XDMA engine (PCIe x1
    Gen2, AXI4-Stream, one channel each way), the reference-clock buffer, a clocking wizard
    making the chip's clock from the engine's, AXI4-Stream clock converters between the two
    clocks and width converters between the engine's 64-bit and the chip's 8-bit streams,
    and the chip as an RTL module.
``symspike_xdma.xdc``
    The card's pins (PCIe reference clock, PERST#, lane 0, LEDs) from the platform's
    resources.
``README.md``
    How to build it with Vivado, load the driver, and reach the card with ``pcie:///dev/xdma0``.

The Verilog is simulated here (``tests/test_pcie.py``: frames in on the slave stream, the
answers out on the master with ``TLAST``); the Tcl and the constraints are not run here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..firmware.config import NetworkConfig, preset
from .targets import load_platform

__all__ = ["PCIE_BOARDS", "PcieBoard", "AxisChipTop", "pcie_config", "write_pcie_kit"]


@dataclass(frozen=True)
class PcieBoard:
    """A PCIe card target: its platform, device, chip clock and default network.

    Parameters
    ----------
    board : str
        Its name.
    platform : str
        ``module:Class`` of its ``amaranth-boards`` platform.
    part : str
        The Vivado part name.
    clock_hz : float
        The chip's clock (made by the clocking wizard from the XDMA engine's 125 MHz).
    n_exc, lanes, pipelines, encoder_lanes : int
        Default network.
    """

    board: str
    platform: str
    part: str
    clock_hz: float
    n_exc: int
    lanes: int
    pipelines: int
    encoder_lanes: int

    def amaranth_platform(self):
        """An instance of the card's ``amaranth-boards`` platform."""
        return load_platform(self.platform)


#: PCIe cards by name.
PCIE_BOARDS = {
    "nitefury-ii": PcieBoard("nitefury-ii", "amaranth_boards.nitefury:NitefuryIIPlatform",
                             "xc7a200tfbg484-2", 62.5e6, 400, 32, 4, 4),
}


def pcie_config(board: str = "nitefury-ii", **changes) -> NetworkConfig:
    """The chip configuration of a PCIe card: the preset with the card's size, parallelism
    and clock; ``changes`` (``None`` values ignored) override them."""
    b = PCIE_BOARDS[board]
    values = {"n_exc": b.n_exc, "lanes": b.lanes, "pipelines": b.pipelines,
              "encoder_lanes": b.encoder_lanes, "clock_hz": b.clock_hz, "board": b.board}
    values.update({k: v for k, v in changes.items() if v is not None})
    return preset(values.pop("n_exc"), **values)


class AxisChipTop(wiring.Component):
    """The chip behind 8-bit AXI4-Stream ports and its own clock and active-low reset.

    Parameters
    ----------
    cfg : NetworkConfig
    seed : int
        Run seed of the chip.

    Members
    -------
    aclk : ``In(1)``
    aresetn : ``In(1)``
        Synchronous to ``aclk``, active low (as the AXI4-Stream clock converter gives it).
    s_axis_tdata : ``In(8)``, s_axis_tvalid : ``In(1)``, s_axis_tready : ``Out(1)``
        Host-to-card bytes.
    m_axis_tdata : ``Out(8)``, m_axis_tvalid : ``Out(1)``, m_axis_tready : ``In(1)``,
    m_axis_tlast : ``Out(1)``
        Card-to-host bytes; ``TLAST`` with the last byte of every answer frame.
    busy : ``Out(1)``
        The chip is working (for a LED).
    """

    def __init__(self, cfg: NetworkConfig, *, seed: int = 0):
        from ..hdl.chip import ChipTop
        from ..hdl.uart import divisor_for
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        self._cfg = cfg
        # No UART on the card; the divisor sets the frame timeout (as a 3 Mbaud line would).
        self.chip = ChipTop(cfg, seed=seed, divisor=divisor_for(cfg.clock_hz, 3_000_000))
        super().__init__({
            "aclk": In(1), "aresetn": In(1),
            "s_axis_tdata": In(8), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "m_axis_tdata": Out(8), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.d.comb += [ClockSignal("sync").eq(self.aclk), ResetSignal("sync").eq(~self.aresetn)]
        m.submodules.chip = chip = self.chip
        m.d.comb += [
            chip.h2c.payload.eq(self.s_axis_tdata), chip.h2c.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(chip.h2c.ready),
            self.m_axis_tdata.eq(chip.c2h.payload.data),
            self.m_axis_tlast.eq(chip.c2h.payload.last),
            self.m_axis_tvalid.eq(chip.c2h.valid), chip.c2h.ready.eq(self.m_axis_tready),
            self.busy.eq(~chip.idle),
        ]
        return m


def _pins(platform) -> dict:
    """Pin names of the card's PCIe reference clock, PERST#, lane 0 and LEDs."""
    from amaranth.build import DiffPairs, Pins
    out = {}
    for res in platform.resources.values():
        if res.name == "pcie" and res.number == 0:
            for sub in res.ios:
                io = sub.ios[0]
                if isinstance(io, DiffPairs):
                    out[sub.name] = (io.p.names, io.n.names)
                elif isinstance(io, Pins):
                    out[sub.name] = (io.names, None)
        if res.name == "led":
            out[f"led{res.number}"] = (res.ios[0].names, None)
    return out


_TCL = """\
# symspike on the {board}: Vivado project with the XDMA engine (PCIe x1 Gen2, AXI4-Stream).
# Made by `symspike build --board {board}`; run with `vivado -mode batch -source {tcl}`.
# Not run where it was made: check it against the Vivado version you have.
set here [file dirname [file normalize [info script]]]
create_project symspike_{board_id} $here/vivado -part {part} -force
add_files -norecurse $here/symspike_axis.v
add_files -fileset constrs_1 -norecurse $here/symspike_xdma.xdc
update_compile_order -fileset sources_1
create_bd_design top

# PCIe reference clock (100 MHz from the slot) and the engine.
create_bd_port -dir I -type clk -freq_hz 100000000 pcie_refclk_p
create_bd_port -dir I -type clk -freq_hz 100000000 pcie_refclk_n
create_bd_port -dir I -type rst pcie_perst_n
set_property CONFIG.POLARITY ACTIVE_LOW [get_bd_ports pcie_perst_n]
create_bd_intf_port -mode Master -vlnv xilinx.com:interface:pcie_7x_mgt_rtl:1.0 pcie_mgt
create_bd_port -dir O busy_led
create_bd_cell -type ip -vlnv xilinx.com:ip:util_ds_buf refclk_buf
set_property CONFIG.C_BUF_TYPE IBUFDSGTE [get_bd_cells refclk_buf]
connect_bd_net [get_bd_ports pcie_refclk_p] [get_bd_pins refclk_buf/IBUF_DS_P]
connect_bd_net [get_bd_ports pcie_refclk_n] [get_bd_pins refclk_buf/IBUF_DS_N]
create_bd_cell -type ip -vlnv xilinx.com:ip:xdma xdma
set_property -dict [list \\
    CONFIG.mode_selection {{Advanced}} \\
    CONFIG.pl_link_cap_max_link_width {{X1}} \\
    CONFIG.pl_link_cap_max_link_speed {{5.0_GT/s}} \\
    CONFIG.axi_data_width {{64_bit}} \\
    CONFIG.axisten_freq {{125}} \\
    CONFIG.xdma_axi_intf_mm {{AXI_Stream}} \\
    CONFIG.xdma_rnum_chnl {{1}} \\
    CONFIG.xdma_wnum_chnl {{1}} \\
    CONFIG.pf0_device_id {{7011}} \\
] [get_bd_cells xdma]
connect_bd_intf_net [get_bd_intf_pins xdma/pcie_mgt] [get_bd_intf_ports pcie_mgt]
connect_bd_net [get_bd_pins refclk_buf/IBUF_OUT] [get_bd_pins xdma/sys_clk]
connect_bd_net [get_bd_ports pcie_perst_n] [get_bd_pins xdma/sys_rst_n]

# The chip's clock: {clock_mhz:g} MHz from the engine's 125 MHz.
create_bd_cell -type ip -vlnv xilinx.com:ip:clk_wiz chip_clk
set_property -dict [list CONFIG.PRIM_IN_FREQ {{125.000}} \\
    CONFIG.CLKOUT1_REQUESTED_OUT_FREQ {{{clock_mhz:.3f}}} CONFIG.USE_RESET {{false}}] \\
    [get_bd_cells chip_clk]
connect_bd_net [get_bd_pins xdma/axi_aclk] [get_bd_pins chip_clk/clk_in1]
create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset chip_rst
connect_bd_net [get_bd_pins chip_clk/clk_out1] [get_bd_pins chip_rst/slowest_sync_clk]
connect_bd_net [get_bd_pins chip_clk/locked] [get_bd_pins chip_rst/dcm_locked]
connect_bd_net [get_bd_pins xdma/axi_aresetn] [get_bd_pins chip_rst/ext_reset_in]

# Host to card: 64-bit at 125 MHz → 8-bit at the chip's clock.
create_bd_cell -type ip -vlnv xilinx.com:ip:axis_clock_converter h2c_cc
create_bd_cell -type ip -vlnv xilinx.com:ip:axis_dwidth_converter h2c_dw
set_property -dict [list CONFIG.S_TDATA_NUM_BYTES {{8}} CONFIG.M_TDATA_NUM_BYTES {{1}} \\
    CONFIG.HAS_TLAST {{1}} CONFIG.HAS_TKEEP {{1}}] [get_bd_cells h2c_dw]
connect_bd_intf_net [get_bd_intf_pins xdma/M_AXIS_H2C_0] [get_bd_intf_pins h2c_cc/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins h2c_cc/M_AXIS] [get_bd_intf_pins h2c_dw/S_AXIS]

# Card to host: 8-bit at the chip's clock → 64-bit at 125 MHz, TLAST kept (end of answer).
create_bd_cell -type ip -vlnv xilinx.com:ip:axis_dwidth_converter c2h_dw
set_property -dict [list CONFIG.S_TDATA_NUM_BYTES {{1}} CONFIG.M_TDATA_NUM_BYTES {{8}} \\
    CONFIG.HAS_TLAST {{1}} CONFIG.HAS_TKEEP {{1}}] [get_bd_cells c2h_dw]
create_bd_cell -type ip -vlnv xilinx.com:ip:axis_clock_converter c2h_cc
connect_bd_intf_net [get_bd_intf_pins c2h_dw/M_AXIS] [get_bd_intf_pins c2h_cc/S_AXIS]
connect_bd_intf_net [get_bd_intf_pins c2h_cc/M_AXIS] [get_bd_intf_pins xdma/S_AXIS_C2H_0]

# The chip.
create_bd_cell -type module -reference symspike_axis chip
connect_bd_intf_net [get_bd_intf_pins h2c_dw/M_AXIS] [get_bd_intf_pins chip/s_axis]
connect_bd_intf_net [get_bd_intf_pins chip/m_axis] [get_bd_intf_pins c2h_dw/S_AXIS]
connect_bd_net [get_bd_pins chip/busy] [get_bd_ports busy_led]
foreach pin {{h2c_cc/s_axis_aclk c2h_cc/m_axis_aclk}} {{
    connect_bd_net [get_bd_pins xdma/axi_aclk] [get_bd_pins $pin]
}}
foreach pin {{h2c_cc/s_axis_aresetn c2h_cc/m_axis_aresetn}} {{
    connect_bd_net [get_bd_pins xdma/axi_aresetn] [get_bd_pins $pin]
}}
foreach pin {{h2c_cc/m_axis_aclk h2c_dw/aclk c2h_dw/aclk c2h_cc/s_axis_aclk chip/aclk}} {{
    connect_bd_net [get_bd_pins chip_clk/clk_out1] [get_bd_pins $pin]
}}
foreach pin {{h2c_cc/m_axis_aresetn h2c_dw/aresetn c2h_dw/aresetn c2h_cc/s_axis_aresetn chip/aresetn}} {{
    connect_bd_net [get_bd_pins chip_rst/peripheral_aresetn] [get_bd_pins $pin]
}}

validate_bd_design
save_bd_design
make_wrapper -files [get_files top.bd] -top -import
set_property top top_wrapper [current_fileset]
launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
"""


_README = """\
# symspike on the {board} (PCIe, XDMA)

Made by `symspike build --board {board}` for the chip N = {n_exc}, lanes {lanes}, pipelines
{pipelines}, encoder lanes {encoder_lanes}, at {clock_mhz:g} MHz (configuration id
{config_id:#010x}). The vendor's tools are needed for this card and were not run where these
files were made: the Verilog is simulated by the project's tests, the Tcl script and the
constraints are not checked.

| file | what |
|---|---|
| `symspike_axis.v` | the chip behind 8-bit AXI4-Stream ports (`s_axis_*` host to card, `m_axis_*` card to host with `TLAST` ending every answer), `aclk`, `aresetn`, `busy` |
| `symspike_xdma.tcl` | Vivado project and block design: XDMA (PCIe x1 Gen2, AXI4-Stream, one H2C and one C2H channel), reference-clock buffer, clocking wizard ({clock_mhz:g} MHz for the chip), AXI4-Stream clock and width converters, the chip |
| `symspike_xdma.xdc` | pins of the card: PCIe reference clock, PERST#, the LED |

## Build

    vivado -mode batch -source symspike_xdma.tcl

The bitstream is `vivado/symspike_{board_id}.runs/impl_1/top_wrapper.bit`. Check the timing
report: the chip's clock is {clock_mhz:g} MHz. The PCIe lane's transceiver placement comes from
the XDMA engine's settings for the part; if Vivado places the lane elsewhere than the card's
M.2 lane 0 (pins {lane0}), set the engine's `pcie_blk_locn`/GT location as the card's
reference design does.

## Use

Load the bitstream (or write it to the card's flash), reboot so that the host enumerates the
card, and load Xilinx's XDMA driver (`dma_ip_drivers`, `XDMA/linux-kernel`). It makes
`/dev/xdma0_h2c_0`, `/dev/xdma0_c2h_0` and `/dev/xdma0_user`. Then

    symspike train --board pcie:///dev/xdma0 --neurons {n_exc} --train 1000

The host writes request frames to `_h2c_0` and reads each answer from `_c2h_0` (an answer is
one packet: the chip sets `TLAST` on its last byte). The protocol is `docs/protocol.md`.
"""


def write_pcie_kit(board: str = "nitefury-ii", *, cfg: NetworkConfig | None = None,
                   seed: int = 0, folder=None) -> dict:
    """Write the Verilog, Tcl, constraints and README of a PCIe card's build.

    Parameters
    ----------
    board : str
        A name of :data:`PCIE_BOARDS`.
    cfg : NetworkConfig, optional
        The chip (default: :func:`pcie_config`).
    seed : int
        Run seed of the chip.
    folder : path-like, optional
        Where (default ``build/boards/<board>``).

    Returns
    -------
    dict
        The paths written and the configuration.
    """
    from amaranth.back import verilog

    from .synth import build_root, shown_path
    if board not in PCIE_BOARDS:
        raise ValueError(f"unknown PCIe board {board!r}; known: {', '.join(PCIE_BOARDS)}")
    b = PCIE_BOARDS[board]
    cfg = pcie_config(board) if cfg is None else cfg
    folder = Path(folder) if folder is not None else build_root().parent / "boards" / board
    folder.mkdir(parents=True, exist_ok=True)
    top = AxisChipTop(cfg, seed=seed)
    paths = {}
    paths["verilog"] = folder / "symspike_axis.v"
    paths["verilog"].write_text(verilog.convert(top, name="symspike_axis"))
    pins = _pins(b.amaranth_platform())
    (clk_p, clk_n), (perst, _) = pins["clk"], pins["rst"]
    (rx_p, rx_n), (tx_p, tx_n) = pins["rx"], pins["tx"]
    lines = [f"# Pins of the {board} (from amaranth-boards' platform); made by symspike build.",
             f"set_property PACKAGE_PIN {clk_p[0]} [get_ports pcie_refclk_p]",
             f"set_property PACKAGE_PIN {clk_n[0]} [get_ports pcie_refclk_n]",
             f"set_property PACKAGE_PIN {perst[0]} [get_ports pcie_perst_n]",
             "set_property IOSTANDARD LVCMOS33 [get_ports pcie_perst_n]",
             "set_property PULLUP true [get_ports pcie_perst_n]",
             "set_false_path -from [get_ports pcie_perst_n]",
             "create_clock -name pcie_refclk -period 10.000 [get_ports pcie_refclk_p]",
             f"# Lane 0: rx {rx_p[0]}/{rx_n[0]}, tx {tx_p[0]}/{tx_n[0]} (placed by the XDMA "
             f"engine's transceiver location)."]
    if "led0" in pins:
        lines += [f"set_property PACKAGE_PIN {pins['led0'][0][0]} [get_ports busy_led]",
                  "set_property IOSTANDARD LVCMOS33 [get_ports busy_led]"]
    paths["xdc"] = folder / "symspike_xdma.xdc"
    paths["xdc"].write_text("\n".join(lines) + "\n")
    info = dict(board=board, board_id=board.replace("-", "_"), part=b.part,
                clock_mhz=cfg.clock_hz / 1e6, tcl="symspike_xdma.tcl", n_exc=cfg.n_exc,
                lanes=cfg.lanes, pipelines=cfg.pipelines, encoder_lanes=cfg.encoder_lanes,
                config_id=cfg.config_id, lane0=f"rx {rx_p[0]}/{rx_n[0]}, tx {tx_p[0]}/{tx_n[0]}")
    paths["tcl"] = folder / "symspike_xdma.tcl"
    paths["tcl"].write_text(_TCL.format(**info))
    paths["readme"] = folder / "README.md"
    paths["readme"].write_text(_README.format(**info))
    return {"board": board, "part": b.part, "config_id": f"{cfg.config_id:#010x}",
            "clock_hz": cfg.clock_hz, "files": {k: shown_path(v) for k, v in paths.items()}}
