"""The board driver: one API for a board on a UART, on PCIe, or the virtual board.

>>> from symspike.firmware.config import preset
>>> url = "serial:///dev/ttyUSB1?baud=3000000"
>>> with Board.open(url, cfg=preset(100)) as board:                    # doctest: +SKIP
...     board.train(x_train[:1000], y_train[:1000])                   # doctest: +SKIP
...     pred = board.infer(x_test[:100])                              # doctest: +SKIP
...     board.checkpoint("board.npz")                                 # doctest: +SKIP

Link robustness
---------------
Every request is one frame (``firmware/protocol.py``) and waits for the answer with its
``SEQ``. A timeout, or a NAK saying that a frame was damaged on the way (:data:`LINE_ERRORS`),
sends the *same* frame again — same ``SEQ``, so a board that did execute it answers from its
stored reply instead of executing it twice — up to ``retries`` times. A NAK
:attr:`~symspike.firmware.protocol.Error.SEQUENCE` means host and board disagree on the
numbering: the host sends ``IDENTIFY`` (accepted with any ``SEQ``, it restarts the numbering)
and then the request again with the next number. Any other NAK refuses the request: it raises
:class:`BoardError`, and the next request is preceded by an ``IDENTIFY`` as well, since the host
cannot know whether the refused one used up its number. Answers that belong to no request
(late duplicates, stale NAKs) are dropped by their ``SEQ``; the frame parser resynchronises
after garbage.

Board resets
------------
:meth:`Board.open` writes a random non-zero value into the ``EPOCH`` register, which a board
reset clears. Calls that present images or touch weights read it back first (at most every
:attr:`Board.epoch_interval` seconds, and after every request that needed a retransmission)
and raise :class:`BoardResetError` when it changed: the board lost its weights and θ, and
:meth:`Board.resume` from a checkpoint restores them.

Lost links
----------
A link whose device disappears (a USB adapter pulled, a card reset) raises
:class:`~symspike.host.link.LinkError` inside a request. The driver then reopens the link,
waiting up to :attr:`Board.reconnect_timeout` seconds for the device to come back, and sends
the request again with the same ``SEQ`` (a board that executed it answers from its stored
reply); after that it checks ``EPOCH``, since a board that lost power was reset as well.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
import secrets
import struct
import time
from pathlib import Path

import numpy as np

from ..firmware.config import DATASETS, NetworkConfig, preset
from ..firmware.protocol import (MAGIC, MAX_PAYLOAD, PHASE_FLAGS, VERSION, Error, FrameParser,
                                 IdBlock, Phase, ProtocolError, Reg, Result, Type, encode,
                                 present_request, rng_registers)
from ..sim.aer import AerEncoder
from ..sim.network import CHECKPOINT_VERSION, CheckpointError, Model
from .link import Link, LinkError, open_link

__all__ = ["Board", "BoardError", "BoardResetError", "MODES", "LINE_ERRORS"]

#: Input modes: the board encodes pixels, or the host streams AER spike events.
MODES = ("pixels", "aer")
#: NAK codes of a frame damaged on its way to the board: the request is sent again.
LINE_ERRORS = frozenset({Error.CRC, Error.TRUNCATED, Error.GARBAGE, Error.OVERSIZE})
#: Requests whose answer waits for a presentation, a scaling pass or the network core.
_LONG = frozenset({Type.PRESENT, Type.PRESENT_RUNS, Type.AER, Type.RESULT, Type.SCALE})
#: Items per ``READ_THETA``/``READ_COUNTS`` (the protocol's limit) and per ``WRITE_THETA``.
_CHUNK = 255
_THETA_PER_FRAME = (MAX_PAYLOAD - 2) // 4
_N_INPUT = 784
_N_CLASSES = 10


class BoardError(Exception):
    """A request that failed or was refused, or a board that does not fit; the message says
    what failed and what to do."""


class BoardResetError(BoardError):
    """The board was reset, or opened by another session, since this session began (its
    ``EPOCH`` register changed): its learned state is not this session's."""


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, leave=False,
                smoothing=0.05, disable=not enabled)


class Board:
    """A connected board; make one with :meth:`open`.

    Parameters
    ----------
    link : Link
        An open byte link (:mod:`symspike.host.link`).
    timeout : float
        Seconds to wait for the answer to a short request.
    work_timeout : float
        Seconds to wait for the answer to a request that runs the network (``PRESENT``,
        ``AER``, ``RESULT``, ``SCALE``): one image with all its re-presentations, on the
        slowest board (the virtual one) included.
    retries : int
        Retransmissions of one request before :class:`BoardError`.
    seed : int
        Run seed of the host-side AER encoder (:class:`~symspike.sim.aer.AerEncoder`).
    check_epoch : bool
        Check the ``EPOCH`` register for board resets (see the module documentation).
    reconnect_timeout : float
        Seconds to wait for a lost link's device to come back (0: do not reopen).

    Attributes
    ----------
    cfg : NetworkConfig or None
        The configuration the board was checked against.
    id : IdBlock or None
        The latest ID block.
    images_seen : int
        Training images presented through this driver (restored by :meth:`resume`).
    encoder : AerEncoder or None
        The host encoder of AER mode; its lanes carry over from image to image.
    epoch_interval : float
        Least seconds between two ``EPOCH`` checks.
    stats : dict
        Link statistics: ``requests``, ``retransmissions``, ``timeouts``, ``line_naks``,
        ``resyncs``, ``stale`` answers dropped, ``reconnects``.
    """

    def __init__(self, link: Link, *, timeout: float = 1.0, work_timeout: float = 60.0,
                 retries: int = 5, seed: int = 0, check_epoch: bool = True,
                 reconnect_timeout: float = 30.0):
        if not isinstance(link, Link):
            raise TypeError(f"link must be a Link, not {type(link).__name__}")
        for name, value in (("timeout", timeout), ("work_timeout", work_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if not reconnect_timeout >= 0:
            raise ValueError(f"reconnect_timeout must be ≥ 0 seconds, not {reconnect_timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative int, not {retries!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, not {seed!r}")
        self._link = link
        self.url = link.url
        self.timeout = float(timeout)
        self.work_timeout = float(work_timeout)
        self.retries = retries
        self.seed = int(seed)
        self.check_epoch = bool(check_epoch)
        self.reconnect_timeout = float(reconnect_timeout)
        self.epoch_interval = 0.5
        self.cfg = None
        self.id = None
        self.images_seen = 0
        self.encoder = None
        self.stats = dict.fromkeys(("requests", "retransmissions", "timeouts", "line_naks",
                                    "resyncs", "stale", "reconnects"), 0)
        self._parser = FrameParser()
        self._inbox = collections.deque()
        # A random first number makes a late answer from an earlier session unlikely to match.
        self._seq = secrets.randbelow(256)
        self._resync = False
        self._epoch = None
        self._epoch_checked = 0.0
        self._checking = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str, *, cfg: NetworkConfig | None = None, timeout: float = 1.0,
             work_timeout: float = 60.0, retries: int = 5, seed: int = 0,
             check_epoch: bool = True, reconnect_timeout: float = 30.0) -> "Board":
        """Open the board at ``url`` (``serial://``, ``pcie://`` or ``sim://``).

        Sends ``IDENTIFY``, checks the ID block against ``cfg`` (:meth:`configure`) and writes
        a fresh ``EPOCH``. Without ``cfg`` the preset whose ``config_id`` the board reports is
        used, if there is one. Other parameters as for :class:`Board`.

        Raises
        ------
        LinkError
            Bad URL, missing device, no permission.
        BoardError
            No answer, not a symspike board, or a bitstream for another configuration.
        """
        if cfg is not None and not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        link = open_link(url, cfg=cfg)
        try:
            board = cls(link, timeout=timeout, work_timeout=work_timeout, retries=retries,
                        seed=seed, check_epoch=check_epoch,
                        reconnect_timeout=reconnect_timeout)
            board.url = url
            board.connect(cfg)
        except BaseException:
            link.close()
            raise
        return board

    def connect(self, cfg: NetworkConfig | None = None):
        """Start a session on the link: identify, check ``cfg``, write a fresh ``EPOCH``."""
        self._link.reset_input()
        self._parser.reset()
        self._inbox.clear()
        # A new session: whatever EPOCH an earlier one wrote is no reset.
        ident = self._identify(check_epoch=False)
        if cfg is not None:
            self._check_config(cfg, ident)
            self.cfg = cfg
        else:
            self.cfg = _preset_for(ident)
        self._new_epoch(ident)

    def close(self):
        """Close the link (idempotent)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._link is None else "open"
        n = f" N={self.id.n_exc}" if self.id is not None else ""
        return f"<Board {self.url}{n} {state}>"

    # ------------------------------------------------------------------ identity
    def identify(self) -> IdBlock:
        """The board's ID block (``IDENTIFY``; restarts the sequence numbering).

        Raises :class:`BoardError` if the answer is not a symspike ID block of this protocol
        version, and :class:`BoardResetError` if the board was reset during this session.
        """
        return self._identify(check_epoch=self.check_epoch)

    def _identify(self, check_epoch):
        ident = self._unpack(IdBlock, self._request(Type.IDENTIFY), "IDENTIFY")
        if ident.magic != MAGIC:
            raise BoardError(f"{self.url} answers but is not a symspike board (magic "
                             f"{ident.magic:#010x}, expected {MAGIC:#010x}); check the URL and "
                             f"the loaded bitstream")
        if ident.version != VERSION:
            raise BoardError(f"the board speaks protocol version {ident.version}, this driver "
                             f"version {VERSION}; load a bitstream built by this symspike or "
                             f"use the matching driver")
        self.id = ident
        if check_epoch and self._epoch is not None and ident.epoch != self._epoch:
            raise self._reset_error(ident.epoch)
        return ident

    def configure(self, cfg: NetworkConfig):
        """Check that the board runs a bitstream for ``cfg`` and use ``cfg`` from now on.

        Raises
        ------
        BoardError
            The ID block's ``config_id``, ``n_exc``, lanes, pipelines or encoder lanes differ
            from ``cfg``'s; the message names both configurations.
        """
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        self._check_config(cfg, self.identify())
        self.cfg = cfg
        self.encoder = None

    def _check_config(self, cfg, ident):
        fields = (("n_exc", "N"), ("lanes", "lanes"), ("pipelines", "pipelines"),
                  ("encoder_lanes", "encoder lanes"))
        diffs = [f"{label} {getattr(ident, name)} ≠ {getattr(cfg, name)}"
                 for name, label in fields if getattr(ident, name) != getattr(cfg, name)]
        if ident.config_id != cfg.config_id:
            diffs.append(f"config_id {ident.config_id:#010x} ≠ {cfg.config_id:#010x}")
        if diffs:
            raise BoardError(
                f"wrong bitstream: the board runs configuration {ident.config_id:#010x} "
                f"(N={ident.n_exc}, {ident.lanes} lanes, {ident.pipelines} pipelines, "
                f"{ident.encoder_lanes} encoder lanes), the host asks for {cfg.config_id:#010x} "
                f"(N={cfg.n_exc}, {cfg.lanes} lanes, {cfg.pipelines} pipelines, "
                f"{cfg.encoder_lanes} encoder lanes) [board ≠ host: {'; '.join(diffs)}]; "
                f"build and load the bitstream for this configuration, or pass the board's "
                f"configuration as cfg")

    # ------------------------------------------------------------------ epoch
    def _new_epoch(self, ident):
        self._epoch = None
        epoch = 0
        while epoch in (0, ident.epoch):
            epoch = secrets.randbits(32)
        self.write_reg(Reg.EPOCH, epoch)
        self._epoch = epoch
        self._epoch_checked = time.monotonic()

    def _reset_error(self, value):
        if value == 0:
            return BoardResetError(
                f"the board at {self.url} was reset (EPOCH reads 0, this session wrote "
                f"{self._epoch:#010x}): its weights and θ are the bitstream's again; resume "
                f"from a checkpoint (Board.resume)")
        return BoardResetError(
            f"another session opened the board at {self.url} (EPOCH reads {value:#010x}, this "
            f"session wrote {self._epoch:#010x}): its weights and θ may have changed; close "
            f"the other program and resume from a checkpoint (Board.resume)")

    def check_reset(self):
        """Read ``EPOCH`` and raise :class:`BoardResetError` if the board was reset."""
        if self._epoch is None:
            return
        self._checking = True
        try:
            value = self.read_reg(Reg.EPOCH)
        finally:
            self._checking = False
        if value != self._epoch:
            raise self._reset_error(value)
        self._epoch_checked = time.monotonic()

    def _guard(self):
        if (self.check_epoch and not self._checking and self._epoch is not None
                and time.monotonic() - self._epoch_checked >= self.epoch_interval):
            self.check_reset()

    # ------------------------------------------------------------------ requests
    def _request(self, type_: Type, payload: bytes = b"", *, timeout: float | None = None
                 ) -> bytes:
        """Send one request and return its ACK payload (see the module documentation)."""
        if self._link is None:
            raise BoardError(f"the board at {self.url} is closed")
        type_ = Type(type_)
        if self._resync and type_ != Type.IDENTIFY:
            self._resynchronise()
        if timeout is None:
            timeout = self.work_timeout if type_ in _LONG else self.timeout
        seq = self._seq
        frame = encode(type_, seq, payload)
        self.stats["requests"] += 1
        self._inbox.clear()
        attempts, renumbered, last = 0, False, ""
        while True:
            try:
                self._link.write(frame)
                kind, value = self._await(seq, type_, timeout)
            except LinkError as exc:
                self._reconnect(exc)
                kind, value = "lost", None
            if kind == "ack":
                self._seq = (seq + 1) & 0xFF
                if type_ == Type.IDENTIFY:
                    self._resync = False
                if attempts and not self._checking and type_ != Type.IDENTIFY:
                    # A retransmitted request may have met a board that was reset meanwhile.
                    self._guard_now()
                return value
            if kind == "nak" and value == Error.SEQUENCE and type_ != Type.IDENTIFY \
                    and not renumbered:
                renumbered = True
                self._resynchronise()
                seq = self._seq
                frame = encode(type_, seq, payload)
                continue
            if kind == "nak":
                self._resync = True
                if not self._checking and type_ != Type.IDENTIFY:
                    # A board reset in the middle of a sequence (an AER presentation) refuses
                    # what follows: say that it was reset, not that the request was wrong.
                    self._guard_now()
                raise BoardError(self._refusal(type_, value, payload))
            attempts += 1
            last = {"timeout": f"no answer in {timeout:g} s",
                    "lost": "the link was lost and reopened"}.get(kind) or \
                f"NAK {_error_name(value)}"
            if attempts > self.retries:
                self._resync = True
                raise BoardError(
                    f"{type_.name} failed on {self.url} after {attempts} attempts (last: "
                    f"{last}): check the cable, the port and the baud rate, and that the "
                    f"board is powered and configured; or raise timeout=/retries=")
            self.stats["retransmissions"] += 1

    def _await(self, seq, type_, timeout):
        deadline = time.monotonic() + timeout
        while True:
            while self._inbox:
                frame = self._inbox.popleft()
                if frame.type == Type.ACK and frame.seq == seq:
                    return "ack", frame.payload
                if frame.type == Type.NAK and len(frame.payload) == 2:
                    code = frame.payload[0]
                    # A damaged frame's NAK may carry a damaged SEQ (or, for garbage, none
                    # of ours): any of them means that something sent may be lost.
                    if code in LINE_ERRORS:
                        self.stats["line_naks"] += 1
                        return "line", code
                    if frame.seq == seq and frame.payload[1] == type_:
                        return "nak", code
                self.stats["stale"] += 1
            remaining = deadline - time.monotonic()
            chunk = self._link.read(4096, remaining) if remaining > 0 else b""
            if not chunk:
                # A frame still incomplete now will not complete: the board sends a frame
                # in one go. Its bytes must not hold up the answers to what is sent next.
                self._parser.reset()
                self.stats["timeouts"] += 1
                return "timeout", None
            self._inbox.extend(self._parser.feed(chunk))

    def _reconnect(self, exc):
        """Reopen a lost link, or raise ``exc`` (with what to do) when it does not return."""
        reopen = getattr(self._link, "reopen", None)
        if not self.reconnect_timeout or reopen is None:
            raise exc
        self.stats["reconnects"] += 1
        try:
            reopen(self.reconnect_timeout)
        except LinkError as again:
            raise LinkError(f"{exc}; it did not come back within {self.reconnect_timeout:g} "
                            f"s ({again}): reconnect the board and resume from the last "
                            f"checkpoint") from None
        self._parser.reset()
        self._inbox.clear()

    def _resynchronise(self):
        self.stats["resyncs"] += 1
        self._resync = False
        try:
            self.identify()
        except BaseException:
            self._resync = True
            raise

    def _guard_now(self):
        if self.check_epoch and self._epoch is not None:
            self.check_reset()

    def _refusal(self, type_, code, payload):
        what = {
            Error.LENGTH: "the payload length does not fit the request",
            Error.TYPE: "the board does not implement this request",
            Error.ADDRESS: "an address (register, row, neuron) is out of range",
            Error.ARGUMENT: "an argument is out of range",
            Error.STATE: "the board is not in a state for it (e.g. an AER presentation "
                         "is open, or none is)",
            Error.SEQUENCE: "the sequence numbers stayed out of step after IDENTIFY",
        }.get(code, "")
        head = payload[:6].hex()
        return (f"the board refused {type_.name} (payload {head}{'…' if len(payload) > 6 else ''}"
                f"): NAK {_error_name(code)}{': ' + what if what else ''}; the request was not "
                f"executed — check its arguments against the board's configuration")

    @staticmethod
    def _unpack(kind, data, what):
        try:
            return kind.unpack(data)
        except ProtocolError as exc:
            raise BoardError(f"malformed answer to {what}: {exc}; is the bitstream built for "
                             f"this protocol version?") from None

    # ------------------------------------------------------------------ registers
    def read_reg(self, addr: int) -> int:
        """32-bit register ``addr`` (:class:`~symspike.firmware.protocol.Reg`)."""
        data = self._request(Type.READ_REG, struct.pack("<H", _u16(addr, "addr")))
        if len(data) != 4:
            raise BoardError(f"malformed answer to READ_REG: {len(data)} bytes, not 4")
        return struct.unpack("<I", data)[0]

    def write_reg(self, addr: int, value: int):
        """Write ``value`` into register ``addr``."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not 0 <= value < 1 << 32:
            raise ValueError(f"a register holds 32 bits, not {value!r}")
        self._request(Type.WRITE_REG, struct.pack("<HI", _u16(addr, "addr"), int(value)))

    def counters(self) -> dict:
        """The board's counters: ``frames``, ``retries``, ``presentations`` and ``errors``
        (a dict by lower-case :class:`~symspike.firmware.protocol.Error` name)."""
        out = {"frames": self.read_reg(Reg.FRAMES), "retries": self.read_reg(Reg.RETRIES),
               "presentations": self.read_reg(Reg.PRESENTATIONS)}
        out["errors"] = {e.name.lower(): self.read_reg(Reg.ERRORS + e) for e in Error}
        return out

    # ------------------------------------------------------------------ presenting
    def _need_cfg(self, what):
        if self.cfg is None:
            which = f"{self.id.config_id:#010x}" if self.id is not None else "unknown"
            raise BoardError(f"{what} needs the network configuration, and the board's "
                             f"({which}) is no preset: pass cfg= to Board.open or call "
                             f"configure(cfg)")
        return self.cfg

    @staticmethod
    def _flags(phase, label):
        if phase not in PHASE_FLAGS:
            raise ValueError(f"phase must be one of {tuple(PHASE_FLAGS)}, not {phase!r}")
        flags = int(PHASE_FLAGS[phase])
        valid = (not isinstance(label, bool) and isinstance(label, (int, np.integer))
                 and 0 <= label < _N_CLASSES)
        if flags & Phase.TEACHER and not valid:
            raise ValueError(f"phase {phase!r} needs a label in 0..9, not {label!r}")
        # Without the teacher the board ignores the label byte.
        return flags, int(label) if valid else 0

    @staticmethod
    def _pixels(image) -> np.ndarray:
        arr = np.asarray(image)
        if arr.size != _N_INPUT:
            raise ValueError(f"an image has {_N_INPUT} pixels, not {arr.size}")
        flat = arr.reshape(-1)
        if flat.dtype != np.uint8:
            if not np.issubdtype(flat.dtype, np.integer) or flat.min() < 0 or flat.max() > 255:
                raise ValueError("pixels must be integers in 0..255")
            flat = flat.astype(np.uint8)
        return np.ascontiguousarray(flat)

    def present(self, image, label: int = -1, phase: str = "test") -> Result:
        """Present one image with the on-chip encoder and re-presentation rule.

        The image goes as runs of non-zero pixels (``PRESENT_RUNS``, about 200 bytes for an
        MNIST digit) or, when that is not shorter, as all 784 pixels (``PRESENT``).

        Parameters
        ----------
        image : array of uint8
            784 pixels (28×28).
        label : int
            Class 0..9; needed when ``phase`` drives the teacher.
        phase : str
            ``"both"``, ``"hidden"``, ``"output"`` or ``"test"`` (as the golden model's).

        Returns
        -------
        Result
            Presentations, final intensity, E spike total and C spike counts.
        """
        flags, lab = self._flags(phase, label)
        pixels = self._pixels(image)
        self._guard()
        type_, body = present_request(pixels.tobytes())
        res = self._unpack(Result, self._request(type_, bytes([flags, lab]) + body),
                           type_.name)
        if phase != "test":
            self.images_seen += 1
        return res

    def aer_encoder(self) -> AerEncoder:
        """The driver's AER encoder (made from :attr:`seed` on first use)."""
        if self.encoder is None:
            self.encoder = AerEncoder(self._need_cfg("AER mode"), self.seed)
        return self.encoder

    def present_aer(self, encoder: AerEncoder | None, image, label: int = -1,
                    phase: str = "test") -> Result:
        """Present one image as host-encoded spike events (AER input mode).

        Each presentation is ``AER_BEGIN``, the events of ``encoder.presentation`` in
        ``AER`` frames of at most ``MAX_PAYLOAD`` bytes, and ``RESULT``. The host applies the
        re-presentation rule: while the E layer fired fewer than ``cfg.min_spikes`` spikes and
        the intensity is below ``cfg.intensity_max``, the intensity rises by one and the image
        is presented again.

        Parameters
        ----------
        encoder : AerEncoder or None
            The encoder whose lanes advance; ``None``: :meth:`aer_encoder`.
        image, label, phase
            As for :meth:`present`.

        Returns
        -------
        Result
            Of the last presentation, with ``presentations`` counted by the host.
        """
        cfg = self._need_cfg("AER mode")
        if encoder is None:
            encoder = self.aer_encoder()
        elif not isinstance(encoder, AerEncoder):
            raise TypeError(f"encoder must be an AerEncoder, not {type(encoder).__name__}")
        if cfg.intensity_max > 255:
            raise BoardError(f"intensity_max {cfg.intensity_max} does not fit AER_BEGIN's byte")
        flags, lab = self._flags(phase, label)
        pixels = self._pixels(image)
        self._guard()
        intensity, presentations = cfg.intensity_init, 0
        while True:
            presentations += 1
            events = encoder.presentation(pixels, intensity).astype("<u2").tobytes()
            self._request(Type.AER_BEGIN, bytes([flags, lab, intensity]))
            for start in range(0, len(events), MAX_PAYLOAD):
                self._request(Type.AER, events[start:start + MAX_PAYLOAD])
            res = self._unpack(Result, self._request(Type.RESULT), "RESULT")
            if res.e_total >= cfg.min_spikes or intensity >= cfg.intensity_max:
                break
            intensity += 1
        if phase != "test":
            self.images_seen += 1
        return Result(presentations, intensity, res.e_total, res.counts_c)

    def _presenter(self, mode):
        if mode == "pixels":
            return self.present
        if mode == "aer":
            encoder = self.aer_encoder()
            return lambda image, label, phase: self.present_aer(encoder, image, label, phase)
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")

    def scale(self, layers: str = "both"):
        """One synaptic-scaling pass (``SCALE``) of ``"in"``, ``"ec"`` or ``"both"``."""
        flags = {"in": Phase.LEARN_IN, "ec": Phase.LEARN_EC,
                 "both": Phase.LEARN_IN | Phase.LEARN_EC}.get(layers)
        if flags is None:
            raise ValueError(f"layers must be 'in', 'ec' or 'both', not {layers!r}")
        self._guard()
        self._request(Type.SCALE, bytes([int(flags)]))

    def finish_training(self):
        """Scale both plastic layers once more, as the golden model's ``finish_training``."""
        self.scale("both")

    def train(self, images, labels, *, phase: str = "both", mode: str = "pixels",
              progress: bool = True, finish: bool = True) -> list[Result]:
        """Train on ``images`` in order, one presentation (with re-presentations) each.

        Parameters
        ----------
        images : array (m, 28, 28) or (m, 784) of uint8
        labels : array (m,) of int
        phase : str
            ``"both"`` (simultaneous training), ``"hidden"`` or ``"output"``.
        mode : str
            ``"pixels"`` (the board encodes) or ``"aer"`` (the host streams spikes).
        progress : bool
            Show a progress bar.
        finish : bool
            End with :meth:`finish_training`. Leave it off between the chunks of one run
            (a scaling pass draws from the board's random streams).

        Returns
        -------
        list of Result
        """
        if phase == "test" or phase not in PHASE_FLAGS:
            raise ValueError(f"phase must be one of {tuple(p for p in PHASE_FLAGS if p != 'test')}"
                             f", not {phase!r} (infer() presents test images)")
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        present = self._presenter(mode)
        results = []
        with _progress(len(images), f"train N={self._n_exc()} ({mode})", progress) as bar:
            for image, label in zip(images, labels):
                results.append(present(image, int(label), phase))
                bar.update(1)
        if finish:
            self.finish_training()
        return results

    def infer(self, images, *, mode: str = "pixels", progress: bool = True,
              details: bool = False):
        """Test-mode presentations; the prediction is the C neuron with most spikes (ties to
        the lower index, :meth:`~symspike.sim.network.Model.classify`).

        Returns
        -------
        numpy.ndarray or dict
            Predictions ``(m,)``; with ``details`` a dict of ``pred``, ``counts_c`` ``(m,
            10)``, ``e_total``, ``presentations`` and ``intensity``.
        """
        images = np.asarray(images)
        present = self._presenter(mode)
        m = images.shape[0]
        pred = np.zeros(m, dtype=np.int64)
        counts_c = np.zeros((m, _N_CLASSES), dtype=np.int64)
        extra = np.zeros((3, m), dtype=np.int64)
        with _progress(m, f"infer N={self._n_exc()} ({mode})", progress) as bar:
            for k in range(m):
                res = present(images[k], -1, "test")
                counts_c[k] = res.counts_c
                pred[k] = Model.classify(counts_c[k])
                extra[:, k] = res.e_total, res.presentations, res.intensity
                bar.update(1)
        if not details:
            return pred
        return {"pred": pred, "counts_c": counts_c, "e_total": extra[0],
                "presentations": extra[1], "intensity": extra[2]}

    def read_counts(self, population: str = "e") -> np.ndarray:
        """Spike counts of the last presentation: ``"e"`` (N,) or ``"c"`` (10,)."""
        pops = {"e": (0, self._n_exc()), "c": (1, _N_CLASSES)}
        if population not in pops:
            raise ValueError(f"population must be 'e' or 'c', not {population!r}")
        pop, n = pops[population]
        out = np.zeros(n, dtype=np.int64)
        for first in range(0, n, _CHUNK):
            count = min(_CHUNK, n - first)
            data = self._request(Type.READ_COUNTS, struct.pack("<BHH", pop, first, count))
            out[first:first + count] = _words(data, "<u2", count, "READ_COUNTS")
        return out

    # ------------------------------------------------------------------ weights and θ
    def _n_exc(self):
        if self.cfg is not None:
            return self.cfg.n_exc
        if self.id is None:
            self.identify()
        return self.id.n_exc

    def _w_max(self):
        return (1 << (self.cfg.formats.weight_bits if self.cfg is not None else 8)) - 1

    def _row_check(self):
        n = self._n_exc()
        if n > MAX_PAYLOAD:
            raise BoardError(f"a row of N={n} weights does not fit one frame "
                             f"({MAX_PAYLOAD} bytes): READ_ROW/WRITE_ROW cannot move it")
        if self._w_max() > 255:
            raise BoardError("weights wider than 8 bits do not fit the protocol's byte codes")
        return n

    def read_weights(self, *, progress: bool = False) -> dict:
        """Weight codes of both plastic projections (``READ_ROW``).

        Returns
        -------
        dict
            ``w_in`` ``(784, N)`` and ``w_ec`` ``(N, 10)``, ``int32`` codes as the golden
            model holds them.
        """
        n = self._row_check()
        self._guard()
        out = {}
        with _progress(_N_INPUT + n, "read weights", progress) as bar:
            for proj, name, rows, cols in ((0, "w_in", _N_INPUT, n), (1, "w_ec", n, _N_CLASSES)):
                w = np.zeros((rows, cols), dtype=np.int32)
                for row in range(rows):
                    data = self._request(Type.READ_ROW, struct.pack("<BH", proj, row))
                    w[row] = _words(data, np.uint8, cols, "READ_ROW")
                    bar.update(1)
                out[name] = w
        return out

    def write_weights(self, w_in=None, w_ec=None, *, progress: bool = False):
        """Write weight codes (``WRITE_ROW``); either projection may be omitted."""
        n = self._row_check()
        w_max = self._w_max()
        todo = []
        for proj, name, w, shape in ((0, "w_in", w_in, (_N_INPUT, n)),
                                     (1, "w_ec", w_ec, (n, _N_CLASSES))):
            if w is None:
                continue
            w = np.asarray(w)
            if w.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, not {w.shape}")
            if w.size and (not np.issubdtype(w.dtype, np.integer) or w.min() < 0
                           or w.max() > w_max):
                raise ValueError(f"{name} must hold integer codes in 0..{w_max}")
            todo.append((proj, w.astype(np.uint8)))
        self._guard()
        with _progress(sum(len(w) for _, w in todo), "write weights", progress) as bar:
            for proj, w in todo:
                for row in range(w.shape[0]):
                    self._request(Type.WRITE_ROW, struct.pack("<BH", proj, row) +
                                  w[row].tobytes())
                    bar.update(1)

    def read_theta(self) -> np.ndarray:
        """The E neurons' adaptive thresholds θ, ``int64`` codes (``READ_THETA``)."""
        n = self._n_exc()
        self._guard()
        out = np.zeros(n, dtype=np.int64)
        for first in range(0, n, _CHUNK):
            count = min(_CHUNK, n - first)
            data = self._request(Type.READ_THETA, struct.pack("<HH", first, count))
            out[first:first + count] = _words(data, "<u4", count, "READ_THETA")
        return out

    def write_theta(self, theta):
        """Write the θ codes of all E neurons (``WRITE_THETA``)."""
        n = self._n_exc()
        theta = np.asarray(theta)
        limit = (1 << self.cfg.formats.theta_bits) - 1 if self.cfg is not None else 2**32 - 1
        if theta.shape != (n,):
            raise ValueError(f"theta must have shape ({n},), not {theta.shape}")
        if n and (not np.issubdtype(theta.dtype, np.integer) or theta.min() < 0
                  or theta.max() > limit):
            raise ValueError(f"theta must hold integer codes in 0..{limit}")
        self._guard()
        for first in range(0, n, _THETA_PER_FRAME):
            part = theta[first:first + _THETA_PER_FRAME].astype("<u4")
            self._request(Type.WRITE_THETA, struct.pack("<H", first) + part.tobytes())

    # ------------------------------------------------------------------ random streams
    def _n_rng(self):
        lanes = self.cfg.encoder_lanes if self.cfg is not None else self.id.encoder_lanes
        return rng_registers(lanes)

    def read_rng(self) -> np.ndarray:
        """The states of the board's random streams (``Reg.RNG``), in the golden model's
        ``rng`` order: encoder lanes, teacher, learning events."""
        self._guard()
        return np.array([self.read_reg(Reg.RNG + k) for k in range(self._n_rng())],
                        dtype=np.int64)

    def write_rng(self, states):
        """Load the states of the board's random streams (as :meth:`read_rng` returns)."""
        states = np.asarray(states)
        n = self._n_rng()
        if states.shape != (n,) or not np.issubdtype(states.dtype, np.integer) or \
                states.min() <= 0 or states.max() >= 1 << 32:
            raise ValueError(f"the board has {n} random streams, each a non-zero 32-bit "
                             f"state; got {states!r}")
        self._guard()
        for k, value in enumerate(states):
            self.write_reg(Reg.RNG + k, int(value))

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, path, extra: dict | None = None):
        """Write the board's learned state to ``path`` atomically (a crash leaves the previous
        file whole): weight codes, θ, the states of its random streams, the configuration,
        images seen, the session's ``EPOCH`` and the AER encoder's lanes, as an ``.npz`` in
        the golden model's checkpoint format (kind ``"board"``). Training resumed from it
        continues exactly as if it had not stopped (with rest mode ``"reset"``, where no
        neuron state carries over from one image to the next).

        ``EPOCH`` is read before and after the state: a board reset in between raises
        :class:`BoardResetError` and writes nothing, so a checkpoint never holds the state
        of a board that was reset behind the host's back.
        """
        path = Path(path)
        self.check_reset()
        weights = self.read_weights()
        theta = self.read_theta()
        rng = self.read_rng()
        self.check_reset()
        meta = {"version": CHECKPOINT_VERSION, "kind": "board", "seed": self.seed,
                "config": self.cfg.to_dict() if self.cfg is not None else None,
                "id": dataclasses.asdict(self.id) if self.id is not None else None,
                "images_seen": self.images_seen, "epoch": self._epoch, "url": self.url,
                "extra": extra or {}}
        state = {"w_in": weights["w_in"], "w_ec": weights["w_ec"], "theta": theta,
                 "rng": rng, "images_seen": np.array(self.images_seen),
                 "epoch": np.array(self._epoch or 0, dtype=np.uint32)}
        if self.encoder is not None:
            state["encoder"] = np.array(self.encoder.lanes)
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                            **state)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def resume(self, path) -> dict:
        """Load a checkpoint onto the board: weights, θ, the random streams, images seen and
        the AER encoder.

        Reads checkpoints of :meth:`checkpoint` and of the golden model
        (:meth:`~symspike.sim.network.Model.save`, kind ``"golden"``). Works on a board that
        was reset: the session gets a fresh ``EPOCH``.

        Returns
        -------
        dict
            The checkpoint's metadata.

        Raises
        ------
        CheckpointError
            Unreadable file, or not a checkpoint of weight codes.
        BoardError
            The checkpoint was made for another configuration than the board's.
        """
        meta, state = Model.read_checkpoint(path)
        kind = meta.get("kind")
        if kind not in ("board", "golden"):
            raise CheckpointError(f"{path} holds a {kind!r} model (real-valued weights); only "
                                  f"board and golden checkpoints hold the chip's weight codes")
        for key in ("w_in", "w_ec", "theta"):
            if key not in state:
                raise CheckpointError(f"{path} has no {key!r}")
        ckpt_cfg = None
        if meta.get("config") is not None:
            try:
                ckpt_cfg = NetworkConfig.from_dict(meta["config"])
            except (TypeError, ValueError) as exc:
                raise CheckpointError(f"{path}: bad configuration ({exc})") from None
        # No reset check: resuming is how a reset board is recovered.
        ident = self._identify(check_epoch=False)
        if ckpt_cfg is not None and ckpt_cfg.config_id != ident.config_id:
            raise BoardError(
                f"{path} was made for configuration {ckpt_cfg.config_id:#010x} "
                f"(N={ckpt_cfg.n_exc}, {ckpt_cfg.lanes} lanes), the board runs "
                f"{ident.config_id:#010x} (N={ident.n_exc}, {ident.lanes} lanes); load the "
                f"matching bitstream")
        if ckpt_cfg is not None and self.cfg is None:
            self.cfg = ckpt_cfg
        self._new_epoch(ident)
        self.write_weights(state["w_in"], state["w_ec"])
        self.write_theta(state["theta"])
        # A golden model's ``rng`` has the board's order; older board checkpoints have none.
        if "rng" in state and np.size(state["rng"]) == self._n_rng():
            self.write_rng(np.asarray(state["rng"]))
        self.images_seen = int(state.get("images_seen", 0))
        lanes = state.get("encoder")
        if lanes is None and kind == "golden" and "rng" in state and self.cfg is not None:
            lanes = state["rng"][:self.cfg.encoder_lanes]
        self.encoder = None
        if lanes is not None and self.cfg is not None:
            encoder = AerEncoder(self.cfg, meta.get("seed", self.seed))
            if np.shape(lanes) != encoder.lanes.shape:
                raise CheckpointError(f"{path} holds {np.size(lanes)} encoder lanes, the "
                                      f"configuration has {encoder.lanes.size}")
            encoder.lanes[...] = lanes
            self.encoder = encoder
        return meta


def _preset_for(ident: IdBlock) -> NetworkConfig | None:
    """The preset with the ID block's ``config_id``, if any (the clock and the board are no
    part of it: :data:`~symspike.firmware.config.PLACEMENT_FIELDS`)."""
    for dataset in DATASETS:
        try:
            cfg = preset(ident.n_exc, dataset, lanes=ident.lanes, pipelines=ident.pipelines,
                         encoder_lanes=ident.encoder_lanes)
        except (TypeError, ValueError):
            continue
        if cfg.config_id == ident.config_id:
            return cfg
    return None


def _error_name(code) -> str:
    try:
        return Error(code).name
    except ValueError:
        return f"code {code}"


def _u16(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must be in 0..65535, not {value!r}")
    return int(value)


def _words(data, dtype, count, what):
    dtype = np.dtype(dtype)
    if len(data) != count * dtype.itemsize:
        raise BoardError(f"malformed answer to {what}: {len(data)} bytes, expected "
                         f"{count * dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype)
