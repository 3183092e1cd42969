"""Drive a :class:`~symspike.hdl.core.NetworkCore` in the Amaranth simulator and read back
what the golden model keeps: weights, θ, spike counts, presentations."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from symspike.hdl import lif
from symspike.hdl.core import CoreOp, NetworkCore
from symspike.sim.aer import AerEncoder
from symspike.sim.network import _FLAGS, GoldenModel

from stream_helpers import stream_put

__all__ = ["present", "present_aer", "read_weights", "read_theta", "read_counts", "simulate_core"]


async def present(ctx, dut, image, label, phase, *, timeout=5_000_000):
    """Load ``image`` and run one ``PRESENT`` with ``phase``'s flags; cycles taken."""
    flat = np.asarray(image, dtype=np.uint8).reshape(-1)
    for p, v in enumerate(flat):
        await stream_put(ctx, dut.pixels, {"value": int(v), "first": int(p == 0)})
    learn_in, learn_ec, teacher = _FLAGS[phase]
    ctx.set(dut.op, CoreOp.PRESENT)
    ctx.set(dut.learn_in, learn_in)
    ctx.set(dut.learn_ec, learn_ec)
    ctx.set(dut.teacher, teacher)
    ctx.set(dut.label, max(label, 0))
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    cycles = 1
    while not ctx.get(dut.done):
        await ctx.tick()
        cycles += 1
        if cycles > timeout:
            raise TimeoutError(f"no done after {timeout} cycles")
    await ctx.tick()
    return cycles


async def present_aer(ctx, dut, encoder, image, label, phase, *, timeout=5_000_000):
    """The same as :func:`present` with the input spikes streamed as address events from a
    host-side encoder (:class:`~symspike.sim.aer.AerEncoder`); the re-presentation rule is
    applied here, as the host driver does. Returns ``(presentations, intensity)``."""
    cfg = dut.cfg
    learn_in, learn_ec, teacher = _FLAGS[phase]
    intensity, presentations = cfg.intensity_init, 0
    while True:
        presentations += 1
        events = encoder.presentation(image, intensity)
        ctx.set(dut.op, CoreOp.PRESENT)
        ctx.set(dut.learn_in, learn_in)
        ctx.set(dut.learn_ec, learn_ec)
        ctx.set(dut.teacher, teacher)
        ctx.set(dut.label, max(label, 0))
        ctx.set(dut.aer, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        head, cycles = 0, 0
        while True:
            offer = head < len(events)
            ctx.set(dut.events.valid, int(offer))
            if offer:
                ctx.set(dut.events.payload, int(events[head]))
            took = offer and ctx.get(dut.events.ready)
            done = ctx.get(dut.done)
            await ctx.tick()
            head += bool(took)
            cycles += 1
            if done:
                break
            if cycles > timeout:
                raise TimeoutError(f"no done after {timeout} cycles")
        ctx.set(dut.events.valid, 0)
        assert head == len(events), f"the core took {head} of {len(events)} events"
        if ctx.get(dut.e_total) >= cfg.min_spikes or intensity >= cfg.intensity_max:
            return presentations, intensity
        intensity += 1


async def read_weights(ctx, dut, proj):
    cfg = dut.cfg
    rows, cols = (cfg.n_input, cfg.n_exc) if proj == 0 else (cfg.n_exc, cfg.n_classes)
    w = np.zeros((rows, cols), dtype=np.int64)
    ctx.set(dut.wrow.ready, 1)
    for i in range(rows):
        ctx.set(dut.wreq.payload, {"write": 0, "proj": proj, "row": i, "col": 0, "wdata": 0})
        ctx.set(dut.wreq.valid, 1)
        await ctx.tick().until(dut.wreq.ready == 1)
        ctx.set(dut.wreq.valid, 0)
        while True:
            beat, = await ctx.tick().sample(dut.wrow.payload).until(dut.wrow.valid == 1)
            for s in range(len(beat.weights)):
                if beat.mask >> s & 1:
                    w[beat.row, beat.col + s] = beat.weights[s]
            if beat.last:
                break
    ctx.set(dut.wrow.ready, 0)
    return w


async def read_theta(ctx, dut):
    n = dut.cfg.n_exc
    out = np.zeros(n, dtype=np.int64)
    ctx.set(dut.state.sel, lif.Word.THETA)
    for j in range(n):
        ctx.set(dut.state.addr, j)
        await ctx.tick()
        out[j] = ctx.get(dut.state.rdata)
    return out


async def read_counts(ctx, dut):
    cfg = dut.cfg
    ce = np.zeros(cfg.n_exc, dtype=np.int64)
    cc = np.zeros(cfg.n_classes, dtype=np.int64)
    for j in range(cfg.n_exc):
        ctx.set(dut.e_count_addr, j)
        await ctx.tick()
        ce[j] = ctx.get(dut.e_count)
    for c in range(cfg.n_classes):
        ctx.set(dut.c_count_addr, c)
        await ctx.tick()
        cc[c] = ctx.get(dut.c_count)
    return ce, cc


def simulate_core(cfg, seed, images, labels, phase, *, aer=False):
    """Present ``images`` to the golden model and to the core; per image, both sides'
    ``(counts_e, counts_c, presentations, intensity)``; at the end, both sides' weights and θ.
    With ``aer`` the input spikes are streamed from a host-side encoder (AER input mode).
    """
    golden = GoldenModel(cfg, seed)
    dut = NetworkCore(cfg, seed=seed, w_in=golden.w_in.copy(), w_ec=golden.w_ec.copy())
    got = {"images": []}
    want = {"images": []}
    for img, lab in zip(images, labels):
        res = golden.present(img, int(lab), phase)
        want["images"].append((res.counts_e.copy(), res.counts_c.copy(), res.presentations,
                               res.intensity))
    want["w_in"], want["w_ec"], want["theta"] = golden.w_in.copy(), golden.w_ec.copy(), \
        golden.theta.copy()

    async def bench(ctx):
        encoder = AerEncoder(cfg, seed)
        for img, lab in zip(images, labels):
            if aer:
                pres, inten = await present_aer(ctx, dut, encoder, img, int(lab), phase)
            else:
                got.setdefault("cycles", []).append(await present(ctx, dut, img, int(lab), phase))
                pres, inten = ctx.get(dut.presentations), ctx.get(dut.intensity)
            ce, cc = await read_counts(ctx, dut)
            got["images"].append((ce, cc, pres, inten))
        got["w_in"] = await read_weights(ctx, dut, 0)
        got["w_ec"] = await read_weights(ctx, dut, 1)
        got["theta"] = await read_theta(ctx, dut)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, want
