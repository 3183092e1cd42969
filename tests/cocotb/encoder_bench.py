"""cocotb bench of the Poisson encoder's Verilog against the golden model.

Run through ``symspike.sim.cosim.run_cocotb`` (see ``tests/test_encoder.py``), which passes
the parameters read by :func:`symspike.sim.cosim.bench_params`:

``config``
    ``NetworkConfig.to_dict()`` of the design (``encoder_lanes`` is the one that matters).
``seed``
    Run seed the design was built with (its lane states after reset).
``reload_seed``
    Run seed whose encoder states are loaded through ``seeds``/``seeds_load`` halfway.
``stim_seed``
    Seed of the random images, intensities, input gaps and output backpressure.
``stall``, ``gap``
    Probability that ``spikes.ready`` is low in a cycle, and that ``pixels.valid`` is.
``random_images``, ``steps``
    Number of random images, and of time steps per image.
``mnist``
    Real images, each a list of 784 pixel values.

Every signal is driven just after a falling edge and sampled in the read-only phase before
the next rising edge, so the bench sees exactly what that edge will act on, in an
event-driven (Icarus) and a cycle-based (Verilator) simulator alike.
"""

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from symspike.firmware.config import NetworkConfig
from symspike.sim.cosim import bench_params
from symspike.sim.network import GoldenModel
from symspike.sim.rng import stream_seeds

#: Cycles a step may take beyond one per pixel and one per spike before the bench gives up.
SLACK = 64


class EncoderDriver:
    """Drives the encoder's pixel stream and step strobe, and sinks its spike stream."""

    def __init__(self, dut, n_input, rng, *, stall, gap):
        self.dut = dut
        self.n_input = n_input
        self.rng = rng
        self.stall = stall
        self.gap = gap

    async def reset(self):
        dut = self.dut
        dut.rst.value = 1
        for port in (dut.pixels__valid, dut.pixels__payload, dut.spikes__ready, dut.step,
                     dut.intensity, dut.seeds, dut.seeds_load):
            port.value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def load(self, image):
        """Stream the image's pixels in, with random gaps; ``first`` marks pixel 0."""
        dut = self.dut
        flat = np.asarray(image, dtype=np.int64).reshape(-1)
        sent = 0
        while sent < self.n_input:
            await FallingEdge(dut.clk)
            if self.rng.random() < self.gap:
                dut.pixels__valid.value = 0
                continue
            dut.pixels__valid.value = 1
            dut.pixels__payload.value = int(flat[sent]) | (int(sent == 0) << 8)
            await ReadOnly()
            if int(dut.pixels__ready.value):
                sent += 1
        await FallingEdge(dut.clk)
        dut.pixels__valid.value = 0
        await ReadOnly()
        assert int(dut.image_valid.value) == 1, "image not complete after n_input pixels"
        assert int(dut.nonzero.value) == int(np.count_nonzero(flat)), "non-zero count"

    async def load_seeds(self, states):
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.seeds.value = sum(int(s) << (32 * k) for k, s in enumerate(states))
        dut.seeds_load.value = 1
        await FallingEdge(dut.clk)
        dut.seeds_load.value = 0

    async def step(self, intensity, limit):
        """One time step: the spikes taken from the stream, and the cycles it took."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.intensity.value = intensity
        dut.step.value = 1
        await FallingEdge(dut.clk)
        dut.step.value = 0
        spikes = []
        for cycle in range(limit):
            ready = self.rng.random() >= self.stall
            dut.spikes__ready.value = int(ready)
            await ReadOnly()
            assert int(dut.busy.value) == 1, "busy fell before done"
            assert int(dut.pixels__ready.value) == 0, "pixels accepted during a step"
            if int(dut.done.value):
                assert not int(dut.spikes__valid.value), "done with a spike pending"
                return spikes, cycle + 1
            if ready and int(dut.spikes__valid.value):
                spikes.append(int(dut.spikes__payload.value))
            await FallingEdge(dut.clk)
        raise AssertionError(f"step not done within {limit} cycles")


def stimuli(params, n_input, rng):
    """``(label, image, intensities)`` of every image shown, in order."""
    steps = params["steps"]
    shown = []
    for k in range(params["random_images"]):
        density = (0.05, 0.25, 0.7)[k % 3]
        image = rng.integers(1, 256, n_input) * (rng.random(n_input) < density)
        shown.append((f"random {k} ({density:.0%})", image, rng.integers(1, 33, steps)))
    for k, image in enumerate(params["mnist"]):
        shown.append((f"mnist {k}", np.asarray(image), rng.integers(1, 33, steps)))
    shown.append(("all-zero", np.zeros(n_input, dtype=np.int64), [32]))
    shown.append(("all-255", np.full(n_input, 255), [32] * steps))
    return shown


@cocotb.test()
async def encoder_matches_golden(dut):
    """Every step's spike list equals the golden model's, under gaps and backpressure."""
    params = bench_params()
    cfg = NetworkConfig.from_dict(params["config"])
    rng = np.random.default_rng(params["stim_seed"])
    n = cfg.n_input
    Clock(dut.clk, 10, unit="ns").start()
    drv = EncoderDriver(dut, n, rng, stall=params["stall"], gap=params["gap"])
    await drv.reset()

    shown = stimuli(params, n, rng)
    golden = GoldenModel(cfg, seed=params["seed"])
    total_steps = total_spikes = total_cycles = 0
    for number, (label, image, intensities) in enumerate(shown):
        if number == len(shown) // 2:
            # Run-time seeding: the lanes restart as the golden model of another run seed.
            await drv.load_seeds(stream_seeds(params["reload_seed"], cfg.encoder_lanes)
                                 ["encoder"])
            golden = GoldenModel(cfg, seed=params["reload_seed"])
        await drv.load(image)
        nonzero = int(np.count_nonzero(image))
        for t, intensity in enumerate(intensities):
            golden.run_steps(1, image=image.reshape(28, 28), intensity=int(intensity))
            expect = np.flatnonzero(golden.pend_in).tolist()
            limit = nonzero + len(expect) + SLACK
            got, cycles = await drv.step(int(intensity), limit)
            assert got == expect, (
                f"{label}, step {t}, intensity {intensity}: spikes differ; expected "
                f"{len(expect)}, got {len(got)}; first difference at position "
                f"{next((i for i, (a, b) in enumerate(zip(got, expect)) if a != b), min(len(got), len(expect)))}")
            total_steps += 1
            total_spikes += len(got)
            total_cycles += cycles
    dut._log.info(f"{total_steps} steps, {total_spikes} spikes, {total_cycles} cycles, "
                  f"{cfg.encoder_lanes} lanes: all equal to the golden model")
