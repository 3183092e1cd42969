"""Testbench helpers for ``amaranth.lib.stream`` interfaces (Amaranth 0.5 async testbenches).

``stream_put`` and ``stream_get`` move one payload through a stream with a valid/ready
handshake; ``stream_put_all`` and ``stream_get_all`` move many, optionally with random gaps
(valid low) or random backpressure (ready low) drawn from a ``numpy.random.Generator`` so a
failing pattern can be replayed from its seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stream_put", "stream_get", "stream_put_all", "stream_get_all", "stream_get_until"]


def _check_probability(name, p):
    if not 0 <= p < 1:
        raise ValueError(f"{name} must be in [0, 1), not {p!r}")


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` until the sink takes it (returns after that edge)."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready == 1)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Accept one payload from ``stream`` and return it (after the edge that takes it)."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid == 1)
    ctx.set(stream.ready, 0)
    return payload


async def stream_put_all(ctx, stream, payloads, *, rng=None, gap: float = 0.0):
    """Put every payload of ``payloads`` in order; with ``rng``, idle a cycle with
    probability ``gap`` before each one."""
    _check_probability("gap", gap)
    for payload in payloads:
        while rng is not None and gap and rng.random() < gap:
            await ctx.tick()
        await stream_put(ctx, stream, payload)


async def stream_get_all(ctx, stream, count: int, *, rng=None, stall: float = 0.0) -> list:
    """Get ``count`` payloads; with ``rng``, hold ready low for a cycle with probability
    ``stall`` before each one."""
    _check_probability("stall", stall)
    out = []
    for _ in range(count):
        while rng is not None and stall and rng.random() < stall:
            await ctx.tick()
        out.append(await stream_get(ctx, stream))
    return out


async def stream_get_until(ctx, stream, done, *, rng: np.random.Generator | None = None,
                           stall: float = 0.0, max_cycles: int = 1_000_000) -> list:
    """Collect payloads from ``stream`` until the one-bit signal ``done`` is seen high.

    Each cycle ``ready`` is high except with probability ``stall`` (random backpressure).
    Payloads are taken on the edges where ``valid`` and ``ready`` are both high, so a sink
    that drops or repeats a payload under backpressure is caught.
    """
    _check_probability("stall", stall)
    out = []
    for _ in range(max_cycles):
        ready = not (rng is not None and stall and rng.random() < stall)
        ctx.set(stream.ready, ready)
        _, _, valid, payload, finished = await ctx.tick().sample(
            stream.valid, stream.payload, done)
        if valid and ready:
            out.append(payload)
        if finished:
            ctx.set(stream.ready, 0)
            return out
    raise TimeoutError(f"{done!r} not seen in {max_cycles} cycles")
