"""cocotb bench of the network core's Verilog against the golden model.

The design is ``NetworkCore(NetworkConfig.from_dict(config), seed=seed, w_in=…, w_ec=…)``,
exported with the golden model's initial weights of the same seed. Run through
``symspike.sim.cosim.run_cocotb`` with the parameters read by
:func:`symspike.sim.cosim.bench_params`:

``config``, ``seed``
    The network and the run seed.
``vectors``
    Path of a JSON file written by ``tests/test_core.py``: the images, labels and phases, and
    for each image the golden model's E and C spike counts, presentations and final
    intensity; at the images listed in ``checks``, every weight of both projections and θ.
``limit``
    Present only the first ``limit`` images (0: all).

For every image the bench streams the 784 pixels, starts a ``PRESENT`` with the phase's
flags and waits for ``done`` (no Python in the loop meanwhile); then it reads the spike
counters and compares them, and at a check point reads back all weights (row reads through
the weight port) and θ (the state port) and compares them word for word. Signals are driven
after a falling edge and sampled before the next rising edge, in Icarus and Verilator alike.
"""

import json

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from amaranth.lib import wiring

from symspike.firmware.config import NetworkConfig
from symspike.hdl import lif
from symspike.hdl.core import CoreOp, NetworkCore
from symspike.sim.cosim import bench_params

#: Phase flags (learn_in, learn_ec, teacher), as ``sim/network.py``.
FLAGS = {"both": (1, 1, 1), "hidden": (1, 0, 0), "output": (0, 1, 1), "test": (0, 0, 0)}


class CoreDriver:
    def __init__(self, dut, core):
        self.dut = dut
        self.core = core
        self.cfg = core.cfg
        sig = core.signature.members
        self.pix = sig["pixels"].signature.members["payload"].shape
        self.req = sig["wreq"].signature.members["payload"].shape
        self.row = sig["wrow"].signature.members["payload"].shape
        self.B = self.cfg.formats.weight_bits

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        # Every input port, whatever the core has: Icarus leaves an undriven one X, and an X
        # write enable would fill a memory with X.
        for path, member, _ in self.core.signature.flatten(self.core):
            if member.flow == wiring.In:
                getattr(dut, "__".join(str(p) for p in path)).value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def load_image(self, image):
        dut = self.dut
        for p, v in enumerate(image):
            dut.pixels__payload.value = self.pix.const(
                {"value": int(v), "first": int(p == 0)}).as_value().value
            dut.pixels__valid.value = 1
            await ReadOnly()
            while not int(dut.pixels__ready.value):
                await FallingEdge(dut.clk)
                await ReadOnly()
            await FallingEdge(dut.clk)
        dut.pixels__valid.value = 0

    async def present(self, label, phase):
        dut = self.dut
        learn_in, learn_ec, teacher = FLAGS[phase]
        dut.op.value = CoreOp.PRESENT.value
        dut.learn_in.value = learn_in
        dut.learn_ec.value = learn_ec
        dut.teacher.value = teacher
        dut.label.value = max(label, 0)
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        await RisingEdge(dut.done)
        await FallingEdge(dut.clk)

    async def read_port(self, addr_port, data_port, n):
        out = []
        for j in range(n + 1):
            if j:
                await ReadOnly()
                out.append(int(data_port.value))
                await FallingEdge(self.dut.clk)
            if j < n:
                addr_port.value = j
                await FallingEdge(self.dut.clk)
        return np.array(out, dtype=np.int64)

    async def counts(self):
        dut, cfg = self.dut, self.cfg
        ce = await self.read_port(dut.e_count_addr, dut.e_count, cfg.n_exc)
        cc = await self.read_port(dut.c_count_addr, dut.c_count, cfg.n_classes)
        return ce, cc

    async def theta(self):
        self.dut.state__sel.value = lif.Word.THETA.value
        return await self.read_port(self.dut.state__addr, self.dut.state__rdata,
                                    self.cfg.n_exc)

    def _fields(self, bits):
        return {name: (bits >> f.offset) & ((1 << f.width) - 1) for name, f in self.row}

    async def weights(self, proj):
        dut, cfg, B = self.dut, self.cfg, self.B
        rows, cols = (cfg.n_input, cfg.n_exc) if proj == 0 else (cfg.n_exc, cfg.n_classes)
        lanes = self.row["weights"].shape.length
        w = np.full((rows, cols), -1, dtype=np.int64)
        dut.wrow__ready.value = 1
        head, done_rows = 0, 0
        while done_rows < rows:
            offer = head < rows
            dut.wreq__valid.value = int(offer)
            if offer:
                dut.wreq__payload.value = self.req.const(
                    {"write": 0, "proj": proj, "row": head}).as_value().value
            await ReadOnly()
            if offer and int(dut.wreq__ready.value):
                head += 1
            if int(dut.wrow__valid.value):
                f = self._fields(int(dut.wrow__payload.value))
                for s in range(lanes):
                    if f["mask"] >> s & 1:
                        w[f["row"], f["col"] + s] = (f["weights"] >> (B * s)) & ((1 << B) - 1)
                done_rows += f["last"]
            await FallingEdge(dut.clk)
        dut.wreq__valid.value = 0
        dut.wrow__ready.value = 0
        return w


def _mismatch(name, got, want):
    got, want = np.asarray(got), np.asarray(want)
    bad = np.argwhere(got != want)
    if bad.size == 0:
        return None
    first = tuple(int(v) for v in bad[0])
    return (f"{name}: {len(bad)} of {want.size} differ, first at {first}: "
            f"RTL {got[first]} vs golden {want[first]}")


@cocotb.test()
async def core_matches_golden(dut):
    """Presentations of real MNIST images: counts per image, weights and θ at checkpoints."""
    p = bench_params()
    cfg = NetworkConfig.from_dict(p["config"])
    with open(p["vectors"]) as f:
        vec = json.load(f)
    core = NetworkCore(cfg, seed=p["seed"])
    drv = CoreDriver(dut, core)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await drv.reset()
    errors = []
    checks = {c["after"]: c for c in vec["checks"]}
    cycles = []
    limit = p.get("limit") or len(vec["images"])
    for k, (image, label, phase, want) in enumerate(zip(vec["images"][:limit], vec["labels"],
                                                        vec["phases"], vec["expected"])):
        await drv.load_image(image)
        t0 = cocotb.utils.get_sim_time("ns")
        await drv.present(label, phase)
        cycles.append((cocotb.utils.get_sim_time("ns") - t0) / 10)
        ce, cc = await drv.counts()
        for name, got_v, want_v in (("E counts", ce, want["counts_e"]),
                                    ("C counts", cc, want["counts_c"])):
            msg = _mismatch(f"image {k}: {name}", got_v, want_v)
            if msg:
                errors.append(msg)
        for name, want_v in (("presentations", want["presentations"]),
                             ("intensity", want["intensity"])):
            got_v = int(getattr(dut, name).value)
            if got_v != want_v:
                errors.append(f"image {k}: {name} RTL {got_v} vs golden {want_v}")
        if k + 1 in checks:
            c = checks[k + 1]
            for name, got_v in (("w_in", await drv.weights(0)), ("w_ec", await drv.weights(1)),
                                ("theta", await drv.theta())):
                msg = _mismatch(f"after {k + 1} images: {name}", got_v, c[name])
                if msg:
                    errors.append(msg)
        dut._log.info(f"image {k}: {cycles[-1]:.0f} cycles, "
                      f"{len(errors)} mismatches so far")
        if errors:
            break
    assert not errors, "\n".join(errors)
    dut._log.info(f"cycles per image: median {np.median(cycles):.0f}")
