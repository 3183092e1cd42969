"""The protocol definitions (``firmware/protocol.py``): CRC, frame encoding, the host's frame
parser under garbage, split reads, stray SYNC bytes and oversize lengths, and the payload
formats."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from symspike.firmware.protocol import (AER_STEP_END, COMMANDS, HEADER_BYTES, MAGIC,
                                        MAX_PAYLOAD, PHASE_FLAGS, SYNC, TRAILER_BYTES, Error,
                                        Frame, FrameParser, IdBlock, Phase, ProtocolError, Reg,
                                        Result, Type, crc16, decode_runs, encode, encode_runs)
from symspike.sim.network import _FLAGS


def test_crc16_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    # Incremental use gives the same value as one call.
    assert crc16(b"56789", crc16(b"1234")) == 0x29B1


def test_encode_layout():
    frame = encode(Type.READ_REG, 0x42, b"\x06\x00")
    assert frame[0] == SYNC and frame[1] == Type.READ_REG and frame[2] == 0x42
    assert frame[3:5] == b"\x02\x00" and frame[5:7] == b"\x06\x00"
    assert struct.unpack("<H", frame[7:])[0] == crc16(frame[1:7])
    assert len(frame) == HEADER_BYTES + 2 + TRAILER_BYTES
    assert Frame(Type.READ_REG, 0x42, b"\x06\x00").encode() == frame


@pytest.mark.parametrize("bad", [dict(type_=256), dict(seq=-1), dict(payload=bytes(1025))])
def test_encode_refuses(bad):
    args = dict(type_=1, seq=0, payload=b"") | bad
    with pytest.raises(ProtocolError):
        encode(args["type_"], args["seq"], args["payload"])


def _frames(rng, count):
    out = []
    for k in range(count):
        size = int(rng.choice([0, 1, 2, 17, MAX_PAYLOAD]))
        payload = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        out.append(Frame(int(rng.integers(0, 256)), k & 0xFF, payload))
    return out


def test_round_trip_whole_and_split():
    rng = np.random.default_rng(1)
    frames = _frames(rng, 40)
    stream = b"".join(f.encode() for f in frames)
    assert FrameParser().feed(stream) == frames
    # Any split of the stream into reads gives the same frames.
    parser = FrameParser()
    got = []
    cuts = np.sort(rng.choice(len(stream), 200, replace=False))
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(stream)]):
        got += parser.feed(stream[a:b])
    assert got == frames and parser.skipped == 0 and parser.bad == 0
    parser = FrameParser()
    got = [f for byte in stream[:3000] for f in parser.feed(bytes([byte]))]
    assert got and got == frames[:len(got)]


def test_parser_skips_garbage_and_stray_sync():
    a = encode(Type.ACK, 1, b"hello")
    b = encode(Type.NAK, 2, bytes([Error.CRC, Type.PRESENT]))
    # Stray SYNC bytes among the garbage, one followed by a plausible header.
    garbage = bytes([0x00, SYNC, 0x13, SYNC, 0x80, 0x07, 0x05, 0x00, 0xFF])
    parser = FrameParser()
    assert parser.feed(garbage + a + garbage + b + garbage[:3]) == [
        Frame(Type.ACK, 1, b"hello"), Frame(Type.NAK, 2, bytes([Error.CRC, Type.PRESENT]))]
    assert parser.skipped > 0 and parser.bad > 0
    # A SYNC inside a payload is data, not a frame start.
    c = encode(Type.ACK, 3, bytes([SYNC] * 8))
    assert FrameParser().feed(c) == [Frame(Type.ACK, 3, bytes([SYNC] * 8))]


def test_parser_drops_bad_crc_and_resynchronises():
    a = bytearray(encode(Type.ACK, 1, b"abcdef"))
    a[7] ^= 0x01
    b = encode(Type.ACK, 2, b"xyz")
    parser = FrameParser()
    assert parser.feed(bytes(a) + b) == [Frame(Type.ACK, 2, b"xyz")]
    assert parser.bad == 1
    # A truncated frame swallows what follows only until the bytes run past its length;
    # then the parser goes back to the byte after its SYNC and finds the next frame.
    short = encode(Type.ACK, 4, bytes(40))[:10]
    parser = FrameParser()
    assert parser.feed(short + b + encode(Type.ACK, 5, bytes(40))) == [
        Frame(Type.ACK, 2, b"xyz"), Frame(Type.ACK, 5, bytes(40))]


def test_parser_oversize_length():
    header = bytes([SYNC, Type.ACK, 0, 0xFF, 0xFF])      # LEN 65535
    b = encode(Type.ACK, 9, b"ok")
    parser = FrameParser()
    assert parser.feed(header + b) == [Frame(Type.ACK, 9, b"ok")]
    assert parser.bad == 1
    limit = bytes([SYNC, Type.ACK, 0]) + struct.pack("<H", MAX_PAYLOAD + 1)
    parser = FrameParser()
    assert parser.feed(limit + b) == [Frame(Type.ACK, 9, b"ok")]


def test_parser_reset_drops_a_partial_frame():
    parser = FrameParser()
    assert parser.feed(encode(Type.ACK, 1, bytes(100))[:50]) == []
    parser.reset()
    assert parser.feed(encode(Type.ACK, 2, b"")) == [Frame(Type.ACK, 2, b"")]


def test_payload_formats():
    ident = IdBlock(MAGIC, 1, 0xDEADBEEF, 400, 64, 4, 4, 0x12345678)
    assert IdBlock.unpack(ident.pack()) == ident
    assert ident.pack()[:4] == b"SSNN"
    res = Result(3, 4, 65535, tuple(range(10)))
    assert Result.unpack(res.pack()) == res
    with pytest.raises(ProtocolError):
        IdBlock.unpack(ident.pack()[:-1])
    with pytest.raises(ProtocolError):
        Result.unpack(res.pack() + b"\x00")


def test_command_table_and_registers():
    requests = [t for t in Type if t < 0x80]
    assert sorted(COMMANDS) == sorted(requests)
    # A whole image with its two header bytes fits one frame; so does an AER frame's even
    # number of words.
    assert COMMANDS[Type.PRESENT] == 786 <= MAX_PAYLOAD
    assert MAX_PAYLOAD % 2 == 0 and AER_STEP_END >= 784
    # Every error code has a counter register inside the register map.
    assert all(Reg.ERRORS + e <= 0xFFFF for e in Error)
    assert len({int(r) for r in Reg}) == len(Reg)


def test_phase_flags_match_the_golden_model():
    for phase, flags in PHASE_FLAGS.items():
        learn_in, learn_ec, teacher = _FLAGS[phase]
        assert bool(flags & Phase.LEARN_IN) == learn_in
        assert bool(flags & Phase.LEARN_EC) == learn_ec
        assert bool(flags & Phase.TEACHER) == teacher


def test_runs_round_trip_and_size(mnist_small):
    x = mnist_small[0]
    sizes = []
    for img in x[:50]:
        px = img.reshape(-1).astype(np.uint8).tobytes()
        runs = encode_runs(px)
        assert decode_runs(runs) == px
        sizes.append(len(runs))
    # MNIST digits: about a quarter of the 784 bytes of PRESENT.
    assert 120 < np.median(sizes) < 260
    # Corners: blank, full, long stretches of zeros and of pixels, a last pixel.
    rng = np.random.default_rng(0)
    for px in (bytes(784), bytes([9]) * 784, bytes(600) + bytes([1]) + bytes(183),
               bytes(783) + bytes([255]), bytes([1, 0]) * 392,
               rng.integers(0, 2, 784).astype(np.uint8).tobytes()):
        runs = encode_runs(px)
        assert decode_runs(runs) == px
        k = 0
        while k < len(runs):            # every run is well formed, none empty but the long
            assert runs[k + 1] or runs[k] == 255      # stretches of zeros
            k += 2 + runs[k + 1]
        assert k == len(runs)
    assert encode_runs(bytes(784)) == b""
    assert decode_runs(b"") == bytes(784)
    assert decode_runs(bytes([3, 2, 7, 8]), 8) == bytes([0, 0, 0, 7, 8, 0, 0, 0])


@pytest.mark.parametrize("runs,message", [
    (bytes([4]), "no count"),
    (bytes([0, 3, 1, 2]), "needs 3 pixel bytes, 2 remain"),
    (bytes([255, 0]) * 3 + bytes([255, 1, 9]), "more than 784"),
])
def test_runs_refused(runs, message):
    with pytest.raises(ProtocolError, match=message):
        decode_runs(runs)
