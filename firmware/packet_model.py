"""A byte-exact model of the chip's packet engine (``hdl/packet.py``) in plain Python.

The model receives the host's bytes and says which answer frames the engine sends, in order,
and how its counters move. It is shared by the pure-Python board of the host tests and by
the fuzzer's reference (``symspike.host.fuzz``), so that both follow the chip's framing rules
from one definition:

* outside a frame every byte but ``SYNC`` is garbage, answered by one NAK ``GARBAGE`` when
  the line falls quiet (:meth:`PacketModel.quiet`);
* a frame is buffered whole, then checked in the order CRC, type, length, retry, sequence;
  the first failing check gives the NAK (``SEQ``/type as received) and nothing else happens;
* a ``LEN`` above :data:`~symspike.firmware.protocol.MAX_PAYLOAD` discards every byte up to
  the next quiet line, then NAK ``OVERSIZE``;
* a frame still open when the line falls quiet gets NAK ``TRUNCATED`` with the last ``TYPE``
  and ``SEQ`` bytes the parser stored (the chip keeps them in registers, so a frame cut
  before them is NAKed with the previous frame's);
* a request that passes goes to the command unit (the ``execute`` callback); its answer is
  stored, and a retry (same ``SEQ`` and type as the last executed request, not ``IDENTIFY``)
  is answered from the store without executing again.

What the command unit does is not modelled here: the callback decides.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Callable, NamedTuple

from .protocol import COMMANDS, MAX_PAYLOAD, SYNC, Error, Type

__all__ = ["Unknown", "Answer", "PacketModel", "length_ok", "crc16_fast"]

#: Index range of the error counters (index = :class:`Error` code).
N_ERRORS = max(Error) + 1
_SYNC_BYTE = bytes([SYNC])


def crc16_fast(data: bytes, crc: int = 0xFFFF) -> int:
    """:func:`~symspike.firmware.protocol.crc16` in C: CRC-16/CCITT-FALSE is ``crc_hqx``
    started at 0xFFFF (the reference loops over every byte of every fuzzed frame)."""
    return binascii.crc_hqx(data, crc)


def length_ok(type_: int, length: int) -> bool:
    """Whether ``length`` is a valid payload length for request ``type_`` (``COMMANDS``);
    ``False`` for types that are not requests."""
    try:
        rule = COMMANDS[Type(type_)]
    except (ValueError, KeyError):
        return False
    if isinstance(rule, int):
        return length == rule
    minimum, multiple = rule
    return length >= minimum and (length - minimum) % multiple == 0


@dataclass(frozen=True)
class Unknown:
    """An answer payload whose ``length`` is known but not its bytes (e.g. a register the
    model has no value for)."""

    length: int


class Answer(NamedTuple):
    """One answer frame of the engine.

    Attributes
    ----------
    type : int
        :attr:`Type.ACK` or :attr:`Type.NAK`.
    seq : int
    payload : bytes or Unknown
    origin : str
        ``"execute"`` (the command unit's answer, ACK or NAK), ``"retry"`` (the stored
        answer sent again) or ``"engine"`` (a NAK of the engine's own checks).
    """

    type: int
    seq: int
    payload: bytes | Unknown
    origin: str

    @property
    def code(self) -> int | None:
        """The NAK's error code, ``None`` for an ACK."""
        if self.type != Type.NAK or isinstance(self.payload, Unknown):
            return None
        return self.payload[0]


#: ``execute(type_, seq, payload) -> (code, body)``: ``code`` ``None`` for an ACK with
#: payload ``body``, else the NAK's error code.
Execute = Callable[[int, int, bytes], tuple]


class PacketModel:
    """The chip's packet engine (see the module documentation).

    Parameters
    ----------
    execute : callable
        The command unit: ``execute(type_, seq, payload)`` returns ``(None, body)`` for an
        ACK or ``(code, b"")`` for a NAK of the command unit.

    Attributes
    ----------
    answers : list of Answer
        Answers made and not yet taken (:meth:`take_answers`).
    frames, retries : int
        The ``FRAMES`` and ``RETRIES`` registers (32 bits).
    errors : list of int
        The error counters by code (16 bits each; index 0 unused).
    last_frame : bytes or None
        The whole last executed request frame (what a retry repeats).
    """

    #: Scalar state copied by :meth:`snapshot`.
    _FIELDS = ("state", "garbage", "f_type", "f_seq", "have_last", "last_seq", "last_type",
               "last_reply", "last_frame", "frames", "retries")

    def __init__(self, execute: Execute):
        self.execute = execute
        self.reset()

    def reset(self):
        """A board reset: counters cleared, no request executed yet."""
        self.state = "sync"         # "sync", "frame" (bytes after SYNC), "discard" (oversize)
        self.buf = bytearray()      # the frame after its SYNC
        self.garbage = False
        # The engine's TYPE and SEQ registers: kept from frame to frame.
        self.f_type = 0
        self.f_seq = 0
        self.have_last = False
        self.last_seq = 0
        self.last_type = 0
        self.last_reply = None      # (code or None, body)
        self.last_frame = None
        self.frames = 0
        self.retries = 0
        self.errors = [0] * N_ERRORS
        self.answers = []

    # ------------------------------------------------------------------ state
    @property
    def in_sync(self) -> bool:
        """Between frames (garbage may be pending): the next ``SYNC`` starts a frame."""
        return self.state == "sync"

    @property
    def clean(self) -> bool:
        """Between frames with no garbage pending: a quiet line changes nothing."""
        return self.state == "sync" and not self.garbage

    @property
    def next_seq(self) -> int:
        """The ``SEQ`` the next request must carry to be executed."""
        return (self.last_seq + 1) & 0xFF if self.have_last else 0

    def snapshot(self):
        """Everything :meth:`restore` needs to undo what follows."""
        return ({name: getattr(self, name) for name in self._FIELDS}, bytes(self.buf),
                list(self.errors), len(self.answers))

    def restore(self, snap):
        fields, buf, errors, n_answers = snap
        for name, value in fields.items():
            setattr(self, name, value)
        self.buf = bytearray(buf)
        self.errors = list(errors)
        del self.answers[n_answers:]

    def set_last(self, seq: int, type_: int, reply, frame: bytes | None = None):
        """Make ``(seq, type_)`` the last executed request with stored ``reply`` (``(code,
        body)``), as after a session start whose requests were not modelled."""
        self.have_last, self.last_seq, self.last_type = True, seq & 0xFF, type_
        self.last_reply, self.last_frame = reply, frame
        if frame is not None and len(frame) >= 3:
            self.f_type, self.f_seq = frame[1], frame[2]

    def take_answers(self) -> list:
        """The answers made since the last call."""
        out, self.answers = self.answers, []
        return out

    # ------------------------------------------------------------------ the line
    def receive(self, data: bytes) -> list:
        """Bytes from the host, arriving back to back.

        Returns
        -------
        list of int
            Offsets in ``data`` of the bytes that completed a frame (the engine then
            checks and answers it before it takes another byte).
        """
        data = bytes(data)
        ends = []
        i, n = 0, len(data)
        while i < n:
            if self.state == "sync":
                j = data.find(_SYNC_BYTE, i)
                if j < 0:
                    self.garbage = True
                    break
                if j > i:
                    self.garbage = True
                self.state = "frame"
                self.buf = bytearray()
                i = j + 1
            elif self.state == "frame":
                buf = self.buf
                have = len(buf)
                if have < 4:
                    take = data[i:i + 4 - have]
                    buf += take
                    i += len(take)
                    if have == 0 and len(buf) >= 1:
                        self.f_type = buf[0]
                    if have <= 1 and len(buf) >= 2:
                        self.f_seq = buf[1]
                    if len(buf) < 4:
                        continue
                    if (buf[2] | buf[3] << 8) > MAX_PAYLOAD:
                        self.state = "discard"
                        continue
                total = 4 + (buf[2] | buf[3] << 8) + 2
                take = data[i:i + total - len(buf)]
                buf += take
                i += len(take)
                if len(buf) == total:
                    self.state = "sync"
                    ends.append(i - 1)
                    self._frame(bytes(buf))
            else:
                # The rest of an oversize frame, discarded up to the next quiet line.
                break
        return ends

    def quiet(self):
        """The line has been quiet for the frame timeout."""
        if self.state == "frame":
            self._nak(Error.TRUNCATED, self.f_seq, self.f_type)
        elif self.state == "discard":
            self._nak(Error.OVERSIZE, self.f_seq, self.f_type)
        self.state = "sync"
        if self.garbage:
            self.garbage = False
            self._nak(Error.GARBAGE, self.last_seq, 0)

    # ------------------------------------------------------------------ checks
    def _nak(self, code, seq, req_type, origin="engine"):
        self.errors[code] = (self.errors[code] + 1) & 0xFFFF
        self.answers.append(Answer(Type.NAK, seq, bytes([int(code), req_type]), origin))

    def _frame(self, buf: bytes):
        type_, seq = buf[0], buf[1]
        length = buf[2] | buf[3] << 8
        if crc16_fast(buf[:4 + length]) != (buf[-2] | buf[-1] << 8):
            return self._nak(Error.CRC, seq, type_)
        if type_ not in COMMANDS.keys():
            return self._nak(Error.TYPE, seq, type_)
        if not length_ok(type_, length):
            return self._nak(Error.LENGTH, seq, type_)
        identify = type_ == Type.IDENTIFY
        if self.have_last and not identify and seq == self.last_seq and type_ == self.last_type:
            self.retries = (self.retries + 1) & 0xFFFFFFFF
            code, body = self.last_reply
            if code is None:
                self.answers.append(Answer(Type.ACK, seq, body, "retry"))
            else:
                self.answers.append(Answer(Type.NAK, seq, bytes([int(code), type_]), "retry"))
            return None
        if self.have_last and not identify and seq != (self.last_seq + 1) & 0xFF:
            return self._nak(Error.SEQUENCE, seq, type_)
        code, body = self.execute(type_, seq, buf[4:4 + length])
        self.set_last(seq, type_, (code, body), _SYNC_BYTE + buf)
        self.frames = (self.frames + 1) & 0xFFFFFFFF
        if code is None:
            self.answers.append(Answer(Type.ACK, seq, body, "execute"))
        else:
            self._nak(code, seq, type_, origin="execute")
        return None
