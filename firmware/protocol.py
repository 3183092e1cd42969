"""The host–board protocol and the register map: the one definition gateware, the virtual
board and the host driver all import.

Frames
------
Every message, in either direction, is one frame of bytes::

    SYNC  TYPE  SEQ  LEN_LO  LEN_HI  PAYLOAD[LEN]  CRC_LO  CRC_HI

``SYNC`` is :data:`SYNC`; ``LEN`` (little-endian) is at most :data:`MAX_PAYLOAD`; ``CRC`` is the
CRC-16/CCITT-FALSE (:func:`crc16`: polynomial 0x1021, initial value 0xFFFF, no reflection, no
final XOR) of ``TYPE``, ``SEQ``, ``LEN`` and the payload, sent little-endian. Multi-byte fields
of payloads are little-endian too.

The host sends requests (:class:`Type` below 0x80); the board answers each with exactly one
frame with the same ``SEQ``: :attr:`Type.ACK` with the command's reply payload (see
:data:`COMMANDS`), or :attr:`Type.NAK` whose two payload bytes are an :class:`Error` code and
the request's type. The board buffers a whole frame and checks it before it acts, so a bad frame
changes nothing.

Sequence numbers
----------------
The host numbers its requests 0, 1, … 255, 0, … A request whose ``SEQ`` equals the previous
accepted request's is a *retry* (its answer was lost): the board sends the stored answer again
and does not act twice. A request with any other ``SEQ`` than ``previous + 1`` is refused with
:attr:`Error.SEQUENCE`; :attr:`Type.IDENTIFY` is accepted with any ``SEQ`` and restarts the
numbering from it (the host's first request after opening a link).

Errors are counted in read-only registers (:class:`Reg`), one per :class:`Error` code.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "SYNC", "MAX_PAYLOAD", "HEADER_BYTES", "TRAILER_BYTES", "MAGIC", "VERSION",
    "Type", "Error", "Reg", "rng_registers", "Phase", "PHASE_FLAGS", "Frame", "crc16", "encode",
    "FrameParser", "ProtocolError", "IdBlock", "Result", "COMMANDS", "encode_runs",
    "decode_runs", "present_request",
]

SYNC = 0x5A
#: Largest payload of a frame in bytes (a whole image with its header fits).
MAX_PAYLOAD = 1024
HEADER_BYTES = 5
TRAILER_BYTES = 2
#: Identification word of the ID block: "SSNN".
MAGIC = 0x4E4E5353
#: Protocol version in the ID block (2: :attr:`Type.PRESENT_RUNS`).
VERSION = 2


class Type(enum.IntEnum):
    """Frame types (requests below 0x80)."""

    #: → ID block (:class:`IdBlock`). Accepted with any ``SEQ``.
    IDENTIFY = 0x01
    #: ``u16 addr`` → ``u32 value``.
    READ_REG = 0x02
    #: ``u16 addr, u32 value`` → empty.
    WRITE_REG = 0x03
    #: ``u8 flags, u8 label, u8 pixels[784]`` → :class:`Result`. Present one image with the
    #: on-chip encoder and the re-presentation rule.
    PRESENT = 0x10
    #: ``u8 flags, u8 label, runs[]`` → :class:`Result`: :attr:`PRESENT` with the image in
    #: runs (:func:`encode_runs`), a third of the bytes for MNIST. Each run is ``u8 zeros, u8
    #: count, u8 values[count]``: ``zeros`` zero pixels, then ``count`` pixels; the image is
    #: padded with zero pixels to 784. A run that extends past the payload or an image
    #: longer than 784 pixels is refused (:attr:`Error.ARGUMENT`) before any pixel is used.
    PRESENT_RUNS = 0x15
    #: ``u8 flags, u8 label, u8 intensity`` → empty. Start one presentation whose input spikes
    #: come from :attr:`AER` frames (no re-presentation: the host decides).
    AER_BEGIN = 0x11
    #: ``u16 events[]`` → empty. Input-spike addresses of the running AER presentation in
    #: time-step order; :data:`AER_STEP_END` closes a step.
    AER = 0x12
    #: empty → :class:`Result` of the last presentation (waits until it ends).
    RESULT = 0x13
    #: ``u8 flags`` → empty. One synaptic-scaling pass of the layers the flags select.
    SCALE = 0x14
    #: ``u8 proj, u16 row`` → ``u8 codes[C]``: one row of weight codes.
    READ_ROW = 0x20
    #: ``u8 proj, u16 row, u8 codes[C]`` → empty.
    WRITE_ROW = 0x21
    #: ``u16 first, u16 count`` → ``u32 theta[count]`` (count ≤ 255).
    READ_THETA = 0x22
    #: ``u16 first, u32 theta[]`` → empty.
    WRITE_THETA = 0x23
    #: ``u8 population (0 E, 1 C), u16 first, u16 count`` → ``u16 counts[count]``.
    READ_COUNTS = 0x24
    #: ``u8 addr, u16 words[]`` → empty. Sequencer program words from ``addr``.
    LOAD_PROGRAM = 0x30
    #: answers
    ACK = 0x80
    NAK = 0x81


class Error(enum.IntEnum):
    """NAK codes. Each has an error counter register (:class:`Reg`)."""

    #: The CRC does not match.
    CRC = 1
    #: ``LEN`` is not a valid length for the type.
    LENGTH = 2
    #: Unknown request type.
    TYPE = 3
    #: ``SEQ`` is neither the next nor a retry.
    SEQUENCE = 4
    #: The frame stopped before its end (no byte for :data:`FRAME_TIMEOUT_BITS` bit times).
    TRUNCATED = 5
    #: ``LEN`` above :data:`MAX_PAYLOAD`; the payload is skipped.
    OVERSIZE = 6
    #: A register, row, neuron or program address out of range.
    ADDRESS = 7
    #: An argument out of range (label, flags, intensity, event address).
    ARGUMENT = 8
    #: The command needs a state the board is not in (e.g. AER frames without AER_BEGIN).
    STATE = 9
    #: Bytes outside any frame were received (answered once, when the line goes quiet).
    GARBAGE = 10


#: Bit times of silence after which a started frame counts as truncated.
FRAME_TIMEOUT_BITS = 2000

#: Event word that ends a time step in :attr:`Type.AER` payloads.
AER_STEP_END = 0xFFFF


class Reg(enum.IntEnum):
    """Register map (32-bit registers, ``READ_REG``/``WRITE_REG``)."""

    #: :data:`MAGIC` (read-only).
    MAGIC = 0x00
    #: :data:`VERSION` (read-only).
    VERSION = 0x01
    #: ``NetworkConfig.config_id`` of the bitstream's configuration (read-only).
    CONFIG_ID = 0x02
    #: Written by the host, 0 after a board reset: a changed epoch means the board was reset.
    EPOCH = 0x03
    #: Bit 0 busy (a presentation runs), bit 1 AER presentation open.
    STATUS = 0x04
    #: Frames accepted (read-only).
    FRAMES = 0x06
    #: Retries answered from the stored reply (read-only).
    RETRIES = 0x07
    #: Presentations since reset (read-only).
    PRESENTATIONS = 0x08
    #: Clock cycles of the last presentation command, saturating (read-only): for ``PRESENT``
    #: from the core's start to its end (``hdl/budget.py``'s ``image_cycles``), for an AER
    #: presentation from ``AER_BEGIN`` to its last step, waits for the host included.
    CYCLES = 0x09
    #: Error counters, one per :class:`Error` code ``c`` at ``ERRORS + c`` (read-only).
    ERRORS = 0x10
    #: States of the chip's random streams at ``RNG + k`` (:func:`rng_registers` of them, in
    #: the golden model's ``rng`` order: encoder lanes, teacher, learning events); written
    #: only while no presentation runs (else NAK ``STATE``), never zero (NAK ``ARGUMENT``).
    RNG = 0x100


def rng_registers(encoder_lanes: int) -> int:
    """Number of :attr:`Reg.RNG` registers of a chip with ``encoder_lanes`` lanes."""
    return encoder_lanes + 2


class Phase(enum.IntEnum):
    """Presentation flags byte: which layers learn and whether the teacher drives C."""

    LEARN_IN = 1
    LEARN_EC = 2
    TEACHER = 4


#: The golden model's phases (``sim/network.py``) as flags bytes.
PHASE_FLAGS = {
    "both": Phase.LEARN_IN | Phase.LEARN_EC | Phase.TEACHER,
    "hidden": Phase.LEARN_IN,
    "output": Phase.LEARN_EC | Phase.TEACHER,
    "test": 0,
}


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of ``b"123456789"``: 0x29B1)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


class ProtocolError(Exception):
    """A frame that cannot be encoded or an answer that does not fit the protocol."""


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode(self.type, self.seq, self.payload)


def encode(type_: int, seq: int, payload: bytes = b"") -> bytes:
    """The bytes of one frame."""
    if not 0 <= type_ <= 0xFF or not 0 <= seq <= 0xFF:
        raise ProtocolError(f"type and seq must be bytes, not {type_!r}, {seq!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"a payload holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = bytes([type_, seq]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


class FrameParser:
    """Incremental decoder of a byte stream into frames (the host side of the link).

    :meth:`feed` takes any number of bytes and returns the frames completed by them. Bytes
    before a ``SYNC`` are skipped (counted in :attr:`skipped`); a frame with a bad CRC or an
    oversize length is dropped (counted in :attr:`bad`) and parsing resumes at the byte after
    its ``SYNC``, so a stray ``SYNC`` inside garbage costs nothing but a resynchronisation.
    """

    def __init__(self):
        self._buf = bytearray()
        self.skipped = 0
        self.bad = 0

    def reset(self):
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out = []
        buf = self._buf
        while True:
            start = buf.find(SYNC)
            if start < 0:
                self.skipped += len(buf)
                buf.clear()
                break
            if start:
                self.skipped += start
                del buf[:start]
            if len(buf) < HEADER_BYTES:
                break
            length = buf[3] | buf[4] << 8
            if length > MAX_PAYLOAD:
                self.bad += 1
                del buf[:1]
                continue
            total = HEADER_BYTES + length + TRAILER_BYTES
            if len(buf) < total:
                break
            body = bytes(buf[1:HEADER_BYTES + length])
            crc = buf[total - 2] | buf[total - 1] << 8
            if crc16(body) != crc:
                self.bad += 1
                del buf[:1]
                continue
            out.append(Frame(buf[1], buf[2], bytes(buf[HEADER_BYTES:HEADER_BYTES + length])))
            del buf[:total]
        return out


@dataclass(frozen=True)
class IdBlock:
    """Payload of the answer to :attr:`Type.IDENTIFY` (:data:`ID_FORMAT`)."""

    magic: int
    version: int
    config_id: int
    n_exc: int
    lanes: int
    pipelines: int
    encoder_lanes: int
    epoch: int

    FORMAT = "<IBIHBBBI"

    def pack(self) -> bytes:
        return struct.pack(self.FORMAT, self.magic, self.version, self.config_id, self.n_exc,
                           self.lanes, self.pipelines, self.encoder_lanes, self.epoch)

    @classmethod
    def unpack(cls, data: bytes) -> "IdBlock":
        if len(data) != struct.calcsize(cls.FORMAT):
            raise ProtocolError(f"an ID block has {struct.calcsize(cls.FORMAT)} bytes, "
                                f"not {len(data)}")
        return cls(*struct.unpack(cls.FORMAT, data))


@dataclass(frozen=True)
class Result:
    """Payload of the answer to :attr:`Type.PRESENT` and :attr:`Type.RESULT`: the last
    presentation's ``presentations``, final ``intensity``, E spike total and C spike counts."""

    presentations: int
    intensity: int
    e_total: int
    counts_c: tuple

    FORMAT = "<BBH10H"

    def pack(self) -> bytes:
        return struct.pack(self.FORMAT, self.presentations, self.intensity, self.e_total,
                           *self.counts_c)

    @classmethod
    def unpack(cls, data: bytes) -> "Result":
        if len(data) != struct.calcsize(cls.FORMAT):
            raise ProtocolError(f"a result has {struct.calcsize(cls.FORMAT)} bytes, "
                                f"not {len(data)}")
        p, i, e, *c = struct.unpack(cls.FORMAT, data)
        return cls(p, i, e, tuple(c))


#: Request payload lengths: an int (exact) or ``(minimum, multiple)`` for variable payloads.
COMMANDS = {
    Type.IDENTIFY: 0,
    Type.READ_REG: 2,
    Type.WRITE_REG: 6,
    Type.PRESENT: 2 + 784,
    Type.PRESENT_RUNS: (2, 1),
    Type.AER_BEGIN: 3,
    Type.AER: (2, 2),
    Type.RESULT: 0,
    Type.SCALE: 1,
    Type.READ_ROW: 3,
    Type.WRITE_ROW: (4, 1),
    Type.READ_THETA: 4,
    Type.WRITE_THETA: (6, 4),
    Type.READ_COUNTS: 5,
    Type.LOAD_PROGRAM: (3, 2),
}


def encode_runs(pixels) -> bytes:
    """The runs of :attr:`Type.PRESENT_RUNS` for an image's pixels (bytes 0–255, 784 of
    them or fewer; the rest are zero): each stretch of non-zero pixels is one run with the
    zeros before it, trailing zeros are left out. A stretch of more than 255 zeros takes
    runs with ``count = 0``, one of more than 255 pixels a further run with ``zeros = 0``.
    """
    px = bytes(bytearray(pixels))
    out = bytearray()
    k, n = 0, len(px)
    while True:
        zeros = 0
        while k < n and px[k] == 0:
            zeros += 1
            k += 1
        if k == n:
            return bytes(out)
        while zeros > 255:
            out += bytes([255, 0])
            zeros -= 255
        start = k
        while k < n and px[k] != 0 and k - start < 255:
            k += 1
        out += bytes([zeros, k - start]) + px[start:k]


def decode_runs(runs: bytes, n_pixels: int = 784) -> bytes:
    """The ``n_pixels`` pixels of :attr:`Type.PRESENT_RUNS` runs; :class:`ProtocolError` for
    a run past the end of ``runs`` or more than ``n_pixels`` pixels (what the chip refuses
    with :attr:`Error.ARGUMENT`)."""
    out = bytearray()
    k = 0
    while k < len(runs):
        if k + 2 > len(runs):
            raise ProtocolError(f"a run at byte {k} has no count byte")
        zeros, count = runs[k], runs[k + 1]
        if k + 2 + count > len(runs):
            raise ProtocolError(f"the run at byte {k} needs {count} pixel bytes, "
                                f"{len(runs) - k - 2} remain")
        out += bytes(zeros) + runs[k + 2:k + 2 + count]
        if len(out) > n_pixels:
            raise ProtocolError(f"the runs make more than {n_pixels} pixels")
        k += 2 + count
    return bytes(out) + bytes(n_pixels - len(out))


def present_request(pixels) -> tuple:
    """``(type, image bytes)`` of the request that presents ``pixels`` (784 bytes): the
    runs (:attr:`Type.PRESENT_RUNS`) when they are shorter, else all pixels
    (:attr:`Type.PRESENT`). The ``flags`` and ``label`` bytes go before the image bytes."""
    pixels = bytes(bytearray(pixels))
    runs = encode_runs(pixels)
    if len(runs) < len(pixels):
        return Type.PRESENT_RUNS, runs
    return Type.PRESENT, pixels
