"""The chip top (``hdl/chip.py``) through its DMA byte streams: the protocol end to end in the
Amaranth simulator.

Frames built with ``firmware/protocol.py`` go in on ``h2c``; the answers on ``c2h`` are parsed
with its ``FrameParser``. Checked: identification, registers, the sequence rules (retry
answered from the stored reply, out-of-order refused), every NAK code the engine and the
executor produce and their counters, and training presentations (all 784 pixels, and runs)
whose result, weights, θ and counts equal the golden model's. Bad frames are shown to change
nothing.
"""

import copy
import struct

from amaranth.sim import Simulator

from symspike.firmware import protocol as P
from symspike.firmware.config import preset
from symspike.hdl.budget import image_cycles, record_activity
from symspike.hdl.chip import ChipTop, id_block
from symspike.sim.network import GoldenModel

T = P.Type
E = P.Error


class Link:
    """Moves bytes through the chip's DMA streams inside an async testbench."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut = ctx, dut
        self.parser = P.FrameParser()

    async def exchange(self, data: bytes, *, quiet: int = 0, max_cycles: int = 400_000):
        """Send ``data``, then run until one frame is answered (or ``quiet`` idle cycles
        pass after the last byte with nothing received: returns ``None``)."""
        ctx, dut = self.ctx, self.dut
        ctx.set(dut.c2h.ready, 1)
        i = cycles = idle = 0
        while cycles < max_cycles:
            offer = i < len(data)
            ctx.set(dut.h2c.valid, int(offer))
            if offer:
                ctx.set(dut.h2c.payload, data[i])
            took = offer and ctx.get(dut.h2c.ready)
            got = ctx.get(dut.c2h.valid)
            beat = ctx.get(dut.c2h.payload)
            await ctx.tick()
            cycles += 1
            i += bool(took)
            if got:
                frames = self.parser.feed(bytes([beat.data]))
                # The DMA stream marks the last byte of every answer.
                assert bool(beat.last) == bool(frames), "last must end each frame"
                if frames:
                    ctx.set(dut.h2c.valid, 0)
                    assert len(frames) == 1
                    return frames[0]
            elif i == len(data):
                idle += 1
                if quiet and idle >= quiet:
                    ctx.set(dut.h2c.valid, 0)
                    return None
        raise TimeoutError(f"no answer in {max_cycles} cycles")

    async def request(self, type_, seq, payload=b""):
        return await self.exchange(P.encode(type_, seq, payload))


def run(cfg, seed, bench, w=None):
    golden = GoldenModel(cfg, seed)
    dut = ChipTop(cfg, seed=seed, divisor=4, w_in=golden.w_in.copy(), w_ec=golden.w_ec.copy())
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await bench(Link(ctx, dut), golden)

    sim.add_testbench(tb)
    sim.run()


def ack(frame, seq, payload=None):
    assert frame.type == T.ACK and frame.seq == seq, frame
    if payload is not None:
        assert frame.payload == payload
    return frame.payload


def nak(frame, seq, code, type_):
    assert (frame.type, frame.seq, frame.payload) == (T.NAK, seq, bytes([code, type_])), frame


CFG = preset(8, lanes=8, pipelines=2, encoder_lanes=2, t_present=10.0, intensity_max=4)


def test_registers_sequence_and_errors():
    async def bench(link, golden):
        ident = ack(await link.request(T.IDENTIFY, 200), 200, id_block(CFG))
        assert P.IdBlock.unpack(ident).config_id == CFG.config_id
        reg = lambda a: struct.pack("<H", a)
        ack(await link.request(T.READ_REG, 201, reg(P.Reg.MAGIC)), 201,
            struct.pack("<I", P.MAGIC))
        ack(await link.request(T.WRITE_REG, 202, struct.pack("<HI", P.Reg.EPOCH, 0x1234567)),
            202, b"")
        epoch = struct.pack("<I", 0x1234567)
        ack(await link.request(T.READ_REG, 203, reg(P.Reg.EPOCH)), 203, epoch)
        # A retry is answered from the stored reply, not executed again.
        ack(await link.request(T.READ_REG, 203, reg(P.Reg.EPOCH)), 203, epoch)
        nak(await link.request(T.READ_REG, 205, reg(P.Reg.EPOCH)), 205, E.SEQUENCE, T.READ_REG)
        bad = bytearray(P.encode(T.WRITE_REG, 204, struct.pack("<HI", P.Reg.EPOCH, 0)))
        bad[7] ^= 0x10
        nak(await link.exchange(bytes(bad)), 204, E.CRC, T.WRITE_REG)
        nak(await link.request(0x77, 204), 204, E.TYPE, 0x77)
        nak(await link.request(T.READ_REG, 204, b"\x00"), 204, E.LENGTH, T.READ_REG)
        nak(await link.request(T.READ_REG, 204, reg(0x3F)), 204, E.ADDRESS, T.READ_REG)
        nak(await link.request(T.WRITE_REG, 205, struct.pack("<HI", P.Reg.MAGIC, 0)), 205,
            E.ADDRESS, T.WRITE_REG)
        nak(await link.request(T.PRESENT, 206, bytes([7, 10]) + bytes(784)), 206,
            E.ARGUMENT, T.PRESENT)
        nak(await link.request(T.AER, 207, struct.pack("<H", 5)), 207, E.STATE, T.AER)
        nak(await link.request(T.READ_ROW, 208, struct.pack("<BH", 0, 784)), 208,
            E.ADDRESS, T.READ_ROW)
        nak(await link.request(T.WRITE_ROW, 209, struct.pack("<BH", 1, 0) + bytes(9)), 209,
            E.LENGTH, T.WRITE_ROW)
        # Oversize: the rest of the frame (here a SYNC among it) is discarded, and the NAK
        # comes when the line has been quiet for the frame timeout.
        big = bytes([P.SYNC, T.AER, 210]) + struct.pack("<H", P.MAX_PAYLOAD + 2) + bytes(40) \
            + P.encode(T.READ_REG, 210, reg(P.Reg.EPOCH))
        nak(await link.exchange(big), 210, E.OVERSIZE, T.AER)
        assert await link.exchange(b"", quiet=P.FRAME_TIMEOUT_BITS * 4 + 16) is None
        # Truncated: a header and half a payload, then silence.
        nak(await link.exchange(P.encode(T.READ_ROW, 210, struct.pack("<BH", 0, 1))[:6]),
            210, E.TRUNCATED, T.READ_ROW)
        # Garbage between frames: one NAK when the line falls quiet.
        frame = await link.exchange(b"\x00\x13\x77")
        assert frame.type == T.NAK and frame.payload[0] == E.GARBAGE
        # The epoch survived all of it; counters say what happened.
        ack(await link.request(T.READ_REG, 210, reg(P.Reg.EPOCH)), 210, epoch)
        counts = {}
        seq = 211
        for code in E:
            payload = ack(await link.request(T.READ_REG, seq, reg(P.Reg.ERRORS + code)), seq)
            counts[code] = struct.unpack("<I", payload)[0]
            seq += 1
        assert counts == {E.CRC: 1, E.LENGTH: 2, E.TYPE: 1, E.SEQUENCE: 1, E.TRUNCATED: 1,
                          E.OVERSIZE: 1, E.ADDRESS: 3, E.ARGUMENT: 1, E.STATE: 1,
                          E.GARBAGE: 1}
        retries = ack(await link.request(T.READ_REG, seq, reg(P.Reg.RETRIES)), seq)
        assert struct.unpack("<I", retries)[0] == 1

    run(CFG, 3, bench)


def test_training_presentation_matches_golden(mnist_small):
    x, y = mnist_small[0], mnist_small[1]

    n_rng = P.rng_registers(CFG.encoder_lanes)

    async def rng(link, seq):
        return [struct.unpack("<I", ack(await link.request(
            T.READ_REG, seq + k, struct.pack("<H", P.Reg.RNG + k)), seq + k))[0]
            for k in range(n_rng)]

    async def bench(link, golden):
        ack(await link.request(T.IDENTIFY, 0), 0)
        assert await rng(link, 1) == [int(r) for r in golden.rng]
        seq = 1 + n_rng
        for k in range(2):
            if k == 1:
                # The random streams read back as the golden model's, and a loaded state
                # is where the next presentation continues (a resumed run).
                assert await rng(link, seq) == [int(r) for r in golden.rng]
                seq += n_rng
                for j in range(n_rng):
                    value = 0x9E3779B9 ^ (j * 0x01000193)
                    ack(await link.request(T.WRITE_REG, seq, struct.pack(
                        "<HI", P.Reg.RNG + j, value)), seq, b"")
                    golden.rng[j] = value
                    seq += 1
                nak(await link.request(T.WRITE_REG, seq, struct.pack("<HI", P.Reg.RNG, 0)),
                    seq, E.ARGUMENT, T.WRITE_REG)
                nak(await link.request(T.WRITE_REG, seq + 1, struct.pack(
                    "<HI", P.Reg.RNG + n_rng, 5)), seq + 1, E.ADDRESS, T.WRITE_REG)
                nak(await link.request(T.READ_REG, seq + 2, struct.pack(
                    "<H", P.Reg.RNG + n_rng)), seq + 2, E.ADDRESS, T.READ_REG)
                seq += 3
            flags = P.PHASE_FLAGS["both"]
            head = bytes([flags, int(y[k])])
            if k == 1:
                # Bad runs are refused before a pixel is used: the presentation below still
                # matches the golden model. A zeros byte without its count, a run past the
                # payload, and runs of 765 + 256 pixels.
                for bad in (bytes([1]), bytes([0, 3, 1, 2]),
                            bytes([255, 0]) * 3 + bytes([255, 1, 9])):
                    nak(await link.request(T.PRESENT_RUNS, seq, head + bad), seq, E.ARGUMENT,
                        T.PRESENT_RUNS)
                    seq += 1
                # The second image goes as runs.
                request = (T.PRESENT_RUNS, head + P.encode_runs(x[k].tobytes()))
            else:
                request = (T.PRESENT, head + x[k].tobytes())
            res = P.Result.unpack(ack(await link.request(request[0], seq, request[1]), seq))
            activity = record_activity(copy.deepcopy(golden), x[k], int(y[k]), "both")
            want = golden.present(x[k], int(y[k]), "both")
            assert (res.presentations, res.intensity, res.e_total) == \
                (want.presentations, want.intensity, int(want.counts_e.sum()))
            assert res.counts_c == tuple(int(c) for c in want.counts_c)
            # CYCLES: the core's start-to-done count, as the cycle budget predicts it.
            cycles = ack(await link.request(T.READ_REG, seq + 1, struct.pack(
                "<H", P.Reg.CYCLES)), seq + 1)
            assert struct.unpack("<I", cycles)[0] == image_cycles(CFG, activity)
            seq += 2
        counts = ack(await link.request(T.READ_COUNTS, seq, struct.pack("<BHH", 0, 0, 8)),
                     seq)
        assert struct.unpack("<8H", counts) == tuple(int(c) for c in want.counts_e)
        seq += 1
        theta = ack(await link.request(T.READ_THETA, seq, struct.pack("<HH", 0, 8)), seq)
        assert struct.unpack("<8I", theta) == tuple(int(t) for t in golden.theta)
        seq += 1
        assert await rng(link, seq) == [int(r) for r in golden.rng]
        seq += n_rng
        for proj, w in ((0, golden.w_in), (1, golden.w_ec)):
            for row in (0, 5, 300, 783) if proj == 0 else range(8):
                got = ack(await link.request(T.READ_ROW, seq, struct.pack("<BH", proj, row)),
                          seq)
                assert list(got) == [int(v) for v in w[row]], (proj, row)
                seq = (seq + 1) & 0xFF
        # Write a row and θ, read them back.
        ack(await link.request(T.WRITE_ROW, seq, struct.pack("<BH", 1, 3) + bytes(range(10))),
            seq, b"")
        seq += 1
        ack(await link.request(T.READ_ROW, seq, struct.pack("<BH", 1, 3)), seq, bytes(range(10)))
        seq += 1
        ack(await link.request(T.WRITE_THETA, seq, struct.pack("<HII", 6, 7, 1 << 28)), seq)
        seq += 1
        theta = ack(await link.request(T.READ_THETA, seq, struct.pack("<HH", 5, 3)), seq)
        assert struct.unpack("<3I", theta) == (int(golden.theta[5]), 7, 1 << 28)

    run(CFG, 3, bench)


def test_aer_mode_and_program_load(mnist_small):
    """AER presentations (events checked before use, the host's re-presentation rule) equal
    the golden model; a loaded program changes the schedule without a new bitstream."""
    from symspike.firmware.asm import assemble
    from symspike.sim.aer import AerEncoder
    from symspike.sim.rng import stream_seeds
    x, y = mnist_small[0], mnist_small[1]
    cfg = preset(8, lanes=8, pipelines=2, encoder_lanes=2, t_present=5.0, intensity_max=3)

    async def bench(link, golden):
        ack(await link.request(T.IDENTIFY, 0), 0)
        seq = 1

        async def req(type_, payload=b"", expect=None):
            nonlocal seq
            frame = await link.request(type_, seq, payload)
            seq = (seq + 1) & 0xFF
            if expect is None:
                return ack(frame, frame.seq)
            nak(frame, frame.seq, expect, type_)

        enc = AerEncoder(cfg, 3)
        flags = P.PHASE_FLAGS["both"]
        want = golden.present(x[0], int(y[0]), "both")
        intensity = cfg.intensity_init
        while True:
            events = enc.presentation(x[0], intensity)
            await req(T.AER_BEGIN, bytes([flags, int(y[0]), intensity]))
            await req(T.RESULT, expect=E.STATE)        # steps still to come
            words = events.astype("<u2").tobytes()
            # A frame with an event after a non-ascending one is refused whole.
            bad = struct.pack("<HHH", 5, 4, P.AER_STEP_END)
            await req(T.AER, bad, expect=E.ARGUMENT)
            for k in range(0, len(words), 64):
                await req(T.AER, words[k:k + 64])
            await req(T.AER, struct.pack("<H", P.AER_STEP_END), expect=E.STATE)
            res = P.Result.unpack(await req(T.RESULT))
            assert res.intensity == intensity
            if res.e_total >= cfg.min_spikes or intensity >= cfg.intensity_max:
                break
            intensity += 1
        assert res.counts_c == tuple(int(c) for c in want.counts_c)
        assert res.e_total == int(want.counts_e.sum()) and intensity == want.intensity
        theta = await req(T.READ_THETA, struct.pack("<HH", 0, 8))
        assert struct.unpack("<8I", theta) == tuple(int(t) for t in golden.theta)
        row = await req(T.READ_ROW, struct.pack("<BH", 1, 2))
        assert list(row) == [int(v) for v in golden.w_ec[2]]

        # A program of two 3-step presentations at intensity 3 without learning or reset.
        text = """
            intensity 3
            clear
            flags input count
            steps 3
            clear
            steps 3
            halt
        """
        words, _ = assemble(text, cfg)
        await req(T.LOAD_PROGRAM, bytes([70]) + struct.pack("<H", words[0]),
                  expect=E.ADDRESS)
        await req(T.LOAD_PROGRAM, bytes([0]) + struct.pack(f"<{len(words)}H", *words))
        res = P.Result.unpack(await req(T.PRESENT, bytes([0, 0]) + x[1].tobytes()))
        assert (res.presentations, res.intensity) == (2, 3)
        # The chip's encoder lanes have not moved (AER input came from the host).
        golden.rng[:cfg.encoder_lanes] = stream_seeds(3, cfg.encoder_lanes)["encoder"]
        golden.run_steps(3, x[1], phase="test", intensity=3)
        counts = golden.run_steps(3, x[1], phase="test", intensity=3)
        assert res.e_total == int(counts[0].sum())

    run(cfg, 3, bench)
