"""Byte links between the host and a board: serial port, PCIe (XDMA) and the virtual board.

Every link moves raw bytes and knows nothing of frames; the framed protocol
(``firmware/protocol.py``) and its retries live in :class:`~symspike.host.board.Board`. A link
offers these calls:

``write(data)``
    Send all of ``data``.
``read(n, timeout)``
    Return between 1 and ``n`` bytes as soon as any have arrived, or ``b""`` when ``timeout``
    seconds pass without a byte.
``reset_input()``
    Drop bytes received but not read yet.
``reopen(timeout)``
    Release the device and open it again, waiting up to ``timeout`` seconds for it to come
    back: after a USB serial adapter was pulled out and plugged in again, say. The links here
    all have it; a link that cannot reopen has ``reopen = None``. A read or write on a device
    that has gone raises :class:`LinkError` at once.
``close()``
    Release the device (idempotent).

:func:`open_link` makes a link from a URL:

* ``serial:///dev/ttyUSB1?baud=3000000`` — a UART (:class:`SerialLink`, pyserial);
* ``pcie:///dev/xdma0[?channel=0]`` — the XDMA character devices of a PCIe card
  (:class:`PcieLink`): ``…_h2c_<channel>`` to the card, ``…_c2h_<channel>`` from it, and the
  user BAR ``…_user`` mapped for direct register access when present;
* ``sim://[executable][?key=value…]`` — a virtual board (``symspike.sim.vboard``): the
  chip's Verilog in Verilator behind a pseudo-terminal, reached through its ``serial://``
  URL, or with ``link=pcie`` through simulated XDMA device files (named pipes) and its
  ``pcie://`` URL. Without an executable the chip (``symspike.hdl.chip.ChipTop``) is built
  for the configuration given to :func:`open_link` (else ``preset(n_exc)``) with the options
  ``n_exc``, ``seed`` and ``divisor``; ``baud``, ``waves``, ``stats``, ``max_cycles`` and
  ``timeout`` go to ``VirtualBoard.start``. Faults for testing a host on a noisy link:
  ``flip=P`` flips one random bit of each byte crossing the UART, either way, with
  probability ``P``; ``drop=P`` loses bytes with probability ``P``; ``flip_seed=S`` seeds both
  (default 0; same seed, same faults). ``path=PATH`` makes ``PATH`` a symbolic link to the
  board's pseudo-terminal, which the link then opens: a path that survives
  ``VirtualBoard.unplug``. For example ``sim://?flip=0.001&flip_seed=3``.
"""

from __future__ import annotations

import errno
import importlib
import mmap
import os
import select
import time
from urllib.parse import parse_qsl, urlsplit

try:
    import termios
except ImportError:         # not a POSIX system
    termios = None

__all__ = ["LinkError", "Link", "SerialLink", "PcieLink", "MmioRegisters", "SimLink",
           "open_link", "parse_url", "DEFAULT_BAUD"]

#: Baud rate of ``serial://`` URLs that do not give one (the boards' UART default).
DEFAULT_BAUD = 3_000_000
#: Bytes of the user BAR that are mapped: one page holds the whole register map.
BAR_BYTES = 4096
#: UART divisor (clock cycles per bit) of a ``sim://`` board that does not give one.
SIM_DIVISOR = 4
#: How long one blocking serial read waits before the deadline is checked again.
_SERIAL_POLL_S = 0.02
#: How often :meth:`Link.reopen` tries a device that is not back yet.
_REOPEN_POLL_S = 0.05
#: Errors of a tty whose device has gone: pyserial's (an ``OSError``), the system's, and
#: those of ``termios`` calls (``flush``, ``reset_input_buffer``), which are not ``OSError``.
_TTY_ERRORS = (OSError,) + ((termios.error,) if termios is not None else ())
#: ``errno`` values of a device that is absent for now (unplugged, not yet back) rather than
#: refused: opening it again later may work.
_ABSENT = (errno.ENOENT, errno.ENODEV, errno.ENXIO, errno.EIO)

_EXAMPLES = ("serial:///dev/ttyUSB1?baud=3000000, pcie:///dev/xdma0 or sim://")


class LinkError(Exception):
    """A link that cannot be opened or used; the message says which device and what to
    check."""


def _bad_url(url, why):
    return LinkError(f"bad link URL {url!r}: {why} (examples: {_EXAMPLES})")


def _int_option(url, options, name, default, minimum=0):
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        raise _bad_url(url, f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise _bad_url(url, f"{name} must be ≥ {minimum}, not {value}")
    return value


def parse_url(url: str) -> tuple[str, str, dict]:
    """Split a link URL into ``(scheme, path, options)``.

    ``path`` joins the URL's host and path parts (``serial://COM3`` gives ``"COM3"``,
    ``serial:///dev/ttyUSB1`` gives ``"/dev/ttyUSB1"``); ``options`` are the query parameters
    as strings. Raises :class:`LinkError` for anything that is not a link URL.
    """
    if not isinstance(url, str) or "://" not in url:
        raise _bad_url(url, "a link URL starts with serial://, pcie:// or sim://")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("serial", "pcie", "sim"):
        raise _bad_url(url, f"unknown scheme {parts.scheme!r}")
    if parts.fragment:
        raise _bad_url(url, "a link URL has no #fragment")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _bad_url(url, f"cannot read the options {parts.query!r}") from None
    options = {}
    for key, value in pairs:
        if key in options:
            raise _bad_url(url, f"option {key!r} is given twice")
        options[key] = value
    return scheme, parts.netloc + parts.path, options


def _open_error(path, exc, what, check):
    """One-line :class:`LinkError` for an ``OSError`` raised while opening ``path``; its
    ``absent`` attribute says whether the device may just not be there yet."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        error = LinkError(f"no {what} at {path}: {check}")
    elif code in (errno.EACCES, errno.EPERM):
        error = LinkError(f"permission denied on {path}: give your user access to the {what} "
                          f"(e.g. a udev rule or the group that owns it) or run with "
                          f"sufficient rights")
    elif code == errno.EBUSY:
        error = LinkError(f"{path} is busy: another program holds the {what}; close it first")
    else:
        reason = getattr(exc, "strerror", None) or str(exc)
        error = LinkError(f"cannot open the {what} at {path}: {reason}")
    error.absent = code in _ABSENT
    return error


def _retry_open(open_once, timeout, what):
    """``open_once()``, tried again while it fails because the device is absent.

    A device refused for another reason (permission, busy) fails at once: waiting would not
    help. After ``timeout`` seconds the last failure is raised, prefixed with ``what``.
    """
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        try:
            return open_once()
        except LinkError as exc:
            if not getattr(exc, "absent", False):
                raise LinkError(f"{what}: {exc}") from None
            if time.monotonic() >= deadline:
                raise LinkError(f"{what}: the device did not come back within {timeout:g} s "
                                f"({exc})") from None
        time.sleep(_REOPEN_POLL_S)


def _reason(exc):
    """What went wrong, in words, for an ``OSError`` or a ``termios.error``."""
    args = getattr(exc, "args", ())
    if termios is not None and isinstance(exc, termios.error) and len(args) == 2:
        return str(args[1])
    return str(exc)


class Link:
    """Interface of every link (see the module documentation); a context manager."""

    url = ""

    def write(self, data: bytes):
        raise NotImplementedError

    def read(self, n: int, timeout: float) -> bytes:
        raise NotImplementedError

    def reset_input(self):
        raise NotImplementedError

    #: ``reopen(timeout)`` of a link that can release its device and open it again, waiting
    #: up to ``timeout`` seconds for it to come back (raising :class:`LinkError` if it does
    #: not); ``None`` for a link that cannot, which a driver then treats as lost for good.
    reopen = None

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self.url}>"


# ------------------------------------------------------------------------------ serial


class SerialLink(Link):
    """A UART through pyserial.

    Parameters
    ----------
    port : str
        Device (``/dev/ttyUSB1``, ``COM3``), or a symbolic link to one.
    baud : int
        Baud rate; 8 data bits, no parity, one stop bit.
    rtscts : bool
        Hardware flow control.

    Notes
    -----
    When the device disappears (a USB adapter pulled out), every call raises
    :class:`LinkError` at once; :meth:`reopen` then waits for the same path to come back.
    """

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, *, rtscts: bool = False):
        self.port = port
        self.baud = baud
        self.rtscts = rtscts
        self.url = f"serial://{port}?baud={baud}"
        self._port = None
        self._port = self._open()

    def _open(self):
        import serial

        try:
            # A fixed short timeout: changing a port's timeout reprograms the tty, so reads
            # wait in short slices against their own deadline instead.
            return serial.Serial(self.port, self.baud, timeout=_SERIAL_POLL_S,
                                 write_timeout=10.0, rtscts=self.rtscts)
        except serial.SerialException as exc:
            raise _open_error(self.port, exc, "serial device",
                              "is the board plugged in and powered, and is this its UART? "
                              "(list the candidates with: python -m serial.tools.list_ports)"
                              ) from None
        except ValueError as exc:
            raise LinkError(f"cannot use baud rate {self.baud} on {self.port}: {exc}") from None

    def _lost(self, exc):
        if not os.path.exists(self.port):
            return LinkError(f"the serial device {self.port} has gone ({_reason(exc)}): the "
                             f"board or its USB adapter was unplugged or powered off; plug it "
                             f"back in and reopen the link")
        return LinkError(f"lost the serial link {self.port}: {_reason(exc)}; check the cable "
                         f"and that no other program uses the port")

    def _require_open(self):
        if self._port is None:
            raise LinkError(f"the serial link {self.port} is closed; reopen it first")
        return self._port

    def write(self, data: bytes):
        port = self._require_open()
        try:
            port.write(data)
            port.flush()
        except _TTY_ERRORS as exc:
            raise self._lost(exc) from None

    def read(self, n: int, timeout: float) -> bytes:
        port = self._require_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            while True:
                data = port.read(1)
                if data:
                    more = min(n - 1, port.in_waiting)
                    return data + port.read(more) if more > 0 else data
                if time.monotonic() >= deadline:
                    return b""
        except _TTY_ERRORS as exc:
            raise self._lost(exc) from None

    def reset_input(self):
        port = self._require_open()
        try:
            port.reset_input_buffer()
        except _TTY_ERRORS as exc:
            raise self._lost(exc) from None

    def reopen(self, timeout: float = 5.0):
        """Close the port and open its path again, retrying for ``timeout`` seconds while the
        device is absent (a USB adapter not plugged back in yet).

        Raises
        ------
        LinkError
            The device did not come back within ``timeout`` seconds, or refused to open
            (permission, busy); the link stays closed and may be reopened later.
        """
        self.close()
        self._port = _retry_open(self._open, timeout,
                                 f"cannot reopen the serial link {self.port}")

    def close(self):
        port, self._port = getattr(self, "_port", None), None
        if port is not None:
            try:
                port.close()
            except _TTY_ERRORS:
                pass        # the device has gone: there is nothing left to release


# ------------------------------------------------------------------------------ PCIe


class MmioRegisters:
    """32-bit registers of a memory-mapped BAR, register ``a`` at byte offset ``4·a``.

    Parameters
    ----------
    path : str
        The BAR's device file (``/dev/xdma0_user``).
    size : int
        Bytes to map.
    """

    def __init__(self, path: str, size: int = BAR_BYTES):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | getattr(os, "O_SYNC", 0))
        except OSError as exc:
            raise _open_error(path, exc, "PCIe user BAR",
                              "is the XDMA driver loaded with the user interface?") from None
        try:
            self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            os.close(self._fd)
            raise LinkError(f"cannot map {size} bytes of the PCIe user BAR {path}: {exc}; "
                            f"is the BAR that large?") from None
        # Whole-word accesses: a register read must be one 32-bit load, not four byte loads.
        self._words = memoryview(self._map).cast("I")
        self.size = size

    def _index(self, addr):
        if not 0 <= addr < self.size // 4:
            raise LinkError(f"register {addr:#x} lies outside the mapped BAR "
                            f"({self.size} bytes of {self.path})")
        return addr

    def read(self, addr: int) -> int:
        return int(self._words[self._index(addr)])

    def write(self, addr: int, value: int):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"a register holds 32 bits, not {value!r}")
        self._words[self._index(addr)] = value

    def close(self):
        words, self._words = getattr(self, "_words", None), None
        if words is not None:
            words.release()
            self._map.close()
            os.close(self._fd)


class PcieLink(Link):
    """The host-to-card and card-to-host streams of an XDMA PCIe card.

    Parameters
    ----------
    base : str
        Device prefix, ``/dev/xdma0``: frames are written to ``<base>_h2c_<channel>`` and
        read from ``<base>_c2h_<channel>``. ``<base>_user`` (the user BAR), when it exists,
        is mapped as :attr:`registers`.
    channel : int
        DMA channel.

    Notes
    -----
    A read of the card-to-host stream returns what the DMA engine delivered; the card ends
    each answer frame with the stream's end-of-packet marker (TLAST), so a read returns at a
    frame boundary rather than waiting for ``n`` bytes.
    """

    def __init__(self, base: str, channel: int = 0):
        self.base = base
        self.channel = channel
        self.url = f"pcie://{base}" + (f"?channel={channel}" if channel else "")
        self.h2c_path = f"{base}_h2c_{channel}"
        self.c2h_path = f"{base}_c2h_{channel}"
        self.user_path = f"{base}_user"
        self._wfd = self._rfd = None
        self.registers = None
        self._open()

    def _open(self):
        check = ("is the card in the slot, its bitstream loaded and the xdma driver loaded? "
                 "(ls /dev/xdma*)")
        try:
            try:
                self._rfd = os.open(self.c2h_path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError as exc:
                raise _open_error(self.c2h_path, exc, "XDMA card-to-host device", check) from None
            try:
                # Without O_NONBLOCK, opening a named pipe that nothing reads (one left by a
                # virtual board that was killed) would hang; with it the open fails (ENXIO).
                self._wfd = os.open(self.h2c_path, os.O_WRONLY | os.O_NONBLOCK)
                os.set_blocking(self._wfd, True)
            except OSError as exc:
                raise _open_error(self.h2c_path, exc, "XDMA host-to-card device", check) from None
            if os.path.exists(self.user_path):
                self.registers = MmioRegisters(self.user_path)
        except BaseException:
            self.close()
            raise

    def _lost(self, exc):
        return LinkError(f"lost the PCIe link {self.base}: {exc}; check the card and the "
                         f"xdma driver (dmesg)")

    def _require_open(self):
        if self._rfd is None:
            raise LinkError(f"the PCIe link {self.base} is closed; reopen it first")

    def reopen(self, timeout: float = 5.0):
        """Close the device files and open them again, retrying for ``timeout`` seconds
        while they are absent (driver reloading, virtual board restarting).

        Raises
        ------
        LinkError
            The devices did not come back within ``timeout`` seconds, or refused to open; the
            link stays closed and may be reopened later.
        """
        self.close()
        _retry_open(self._open, timeout, f"cannot reopen the PCIe link {self.base}")

    def write(self, data: bytes):
        self._require_open()
        view = memoryview(bytes(data))
        try:
            while view:
                done = os.write(self._wfd, view)
                view = view[done:]
        except OSError as exc:
            raise self._lost(exc) from None

    def read(self, n: int, timeout: float) -> bytes:
        self._require_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            while True:
                remaining = deadline - time.monotonic()
                ready, _, _ = select.select([self._rfd], [], [], max(remaining, 0.0))
                if ready:
                    try:
                        data = os.read(self._rfd, n)
                    except BlockingIOError:
                        data = b""
                    if data:
                        return data
                    # End of file (no writer yet): readable at once, so wait a little.
                    time.sleep(min(0.001, max(remaining, 0.0)))
                if time.monotonic() >= deadline:
                    return b""
        except OSError as exc:
            raise self._lost(exc) from None

    def reset_input(self):
        self._require_open()
        try:
            while select.select([self._rfd], [], [], 0)[0]:
                try:
                    if not os.read(self._rfd, 65536):
                        break
                except BlockingIOError:
                    break
        except OSError as exc:
            raise self._lost(exc) from None

    def read_reg(self, addr: int) -> int:
        """Register ``addr`` through the user BAR."""
        if self.registers is None:
            raise LinkError(f"no user BAR at {self.user_path}: use the framed READ_REG")
        return self.registers.read(addr)

    def write_reg(self, addr: int, value: int):
        """Write register ``addr`` through the user BAR."""
        if self.registers is None:
            raise LinkError(f"no user BAR at {self.user_path}: use the framed WRITE_REG")
        self.registers.write(addr, value)

    def close(self):
        if self.registers is not None:
            self.registers.close()
            self.registers = None
        for name in ("_wfd", "_rfd"):
            fd = getattr(self, name, None)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)


# ------------------------------------------------------------------------------ sim


class SimLink(Link):
    """A virtual board and the link to it (serial or PCIe); closing the link stops the board.

    Attributes
    ----------
    vboard : symspike.sim.vboard.VirtualBoard
        The running board (its ``stats`` say how fast it simulates).
    inner : Link or None
        The serial or PCIe link to it (``None`` once closed).
    """

    def __init__(self, vboard, link: Link, url: str):
        self.vboard = vboard
        self._link = link
        self.url = url

    @property
    def inner(self) -> Link | None:
        return self._link

    def write(self, data: bytes):
        self._link.write(data)

    def read(self, n: int, timeout: float) -> bytes:
        return self._link.read(n, timeout)

    def reset_input(self):
        self._link.reset_input()

    def reopen(self, timeout: float = 5.0):
        """Reopen the link to the board, which keeps running.

        Over the serial link this first waits for the board's link to be plugged in again
        (``VirtualBoard.unplug``), then opens the stable ``path=`` of the URL, or else the
        board's current pseudo-terminal, which may have changed.

        Raises
        ------
        LinkError
            The link was closed (closing stops the board: open a new one), the simulator has
            exited, or the link did not come back within ``timeout`` seconds.
        """
        if self._link is None:
            raise LinkError(f"{self.url} is closed, and its virtual board stopped: open the "
                            f"link again to start a new one")
        vboard = self.vboard
        if not getattr(vboard, "alive", True):
            status = getattr(vboard, "returncode", "?")
            raise LinkError(f"cannot reopen {self.url}: the virtual board's simulator has "
                            f"exited (status {status}); open the link again to start a new one")
        if not isinstance(self._link, SerialLink):
            self._link.reopen(timeout)
            return
        deadline = time.monotonic() + max(timeout, 0.0)
        wait_plugged = getattr(vboard, "wait_plugged", None)
        if wait_plugged is not None and not wait_plugged(max(timeout, 0.0)):
            raise LinkError(f"cannot reopen {self.url}: the virtual board's serial link was not "
                            f"plugged in again within {timeout:g} s (or its simulator exited)")
        inner = self._link
        inner.close()

        def attempt():
            # Looked up at every try: the board may report its new pseudo-terminal only after
            # the host noticed the old one had gone.
            url = (getattr(vboard, "link_url", None) or getattr(vboard, "serial_url", None)
                   or inner.url)
            if url == self._link.url:
                self._link._port = self._link._open()
            else:
                # A fresh pseudo-terminal under another name. Until it opens, the old link
                # stays (closed), so that a failed reopen can be tried again.
                self._link = open_link(url)

        _retry_open(attempt, max(deadline - time.monotonic(), 0.0), f"cannot reopen {self.url}")

    def close(self):
        link, self._link = self._link, None
        if link is None:
            return
        try:
            link.close()
        finally:
            _stop(self.vboard)


def _convert(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


#: ``sim://`` options: the chip's (``n_exc``, ``seed``, ``divisor``), the link to it
#: (``link``: ``uart`` or ``pcie``; ``path``: a stable symbolic link to the serial device),
#: the UART's faults (``flip``, ``drop``: probabilities; ``flip_seed``) and those passed on
#: to ``VirtualBoard.start``.
SIM_OPTIONS = ("n_exc", "seed", "divisor", "link", "path", "flip", "drop", "flip_seed", "baud",
               "waves", "stats", "max_cycles", "timeout")
#: Values of the ``sim://`` option ``link``.
SIM_LINKS = ("uart", "pcie")


def _stop(vboard):
    stop = getattr(vboard, "close", None) or getattr(vboard, "stop", None)
    if stop is not None:
        stop()


def _open_sim(url, target, options, cfg):
    unknown = sorted(set(options) - set(SIM_OPTIONS))
    if unknown:
        raise _bad_url(url, f"unknown option(s) {unknown}; sim:// takes "
                            f"{', '.join(SIM_OPTIONS)}")
    try:
        # By module name, not as an attribute of the package, so that sys.modules decides
        # (as it does for a stand-in module).
        vboard_module = importlib.import_module("..sim.vboard", __package__)
        VirtualBoard = vboard_module.VirtualBoard
    except (ImportError, AttributeError) as exc:
        raise LinkError(f"{url} needs the virtual board (symspike.sim.vboard), which cannot "
                        f"be imported here ({exc}); use a serial:// or pcie:// board") from None
    failures = (TypeError, ValueError, OSError) + tuple(
        err for err in (getattr(vboard_module, name, None) for name in ("VBoardError",
                                                                         "CosimError"))
        if isinstance(err, type) and issubclass(err, Exception))
    kind = options.pop("link", "uart").lower()
    if kind not in SIM_LINKS:
        raise _bad_url(url, f"link must be one of {', '.join(SIM_LINKS)}, not {kind!r}")
    # Taken as given, not through _convert: a path is text whatever it looks like, and a
    # probability is checked here so that the message names the URL's option.
    start_options = {}
    for name, key in (("flip", "flip_rate"), ("drop", "drop_rate")):
        raw = options.pop(name, None)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not 0.0 <= value <= 1.0:
            raise _bad_url(url, f"{name} must be a probability from 0 to 1, not {raw!r}")
        if kind == "pcie":
            raise _bad_url(url, f"{name} puts noise on the UART, which link=pcie does not use")
        start_options[key] = value
    flip_seed = _int_option(url, options, "flip_seed", None, minimum=0)
    if flip_seed is not None:
        if flip_seed >= 1 << 64:
            raise _bad_url(url, f"flip_seed must be < 2**64, not {flip_seed}")
        start_options["flip_seed"] = flip_seed
    path = options.pop("path", None)
    if path is not None:
        if not path:
            raise _bad_url(url, "path needs a file name (path=board.tty)")
        start_options["link"] = path
    kwargs = {key: _convert(value) for key, value in options.items()}
    kwargs.update(start_options)
    if kind == "pcie":
        kwargs["xdma"] = True
    n_exc = kwargs.pop("n_exc", None)
    seed = kwargs.pop("seed", 0)
    if target:
        # A virtual-board executable built before: it holds its own chip.
        if n_exc is not None or "seed" in options:
            raise _bad_url(url, "n_exc and seed describe a chip to build; the executable "
                                f"{target} holds its own")
        design = target
    else:
        kwargs.setdefault("divisor", SIM_DIVISOR)
        try:
            from ..firmware.config import preset
            from ..hdl.chip import ChipTop
        except ImportError as exc:
            raise LinkError(f"{url} needs the chip (symspike.hdl.chip), which cannot be "
                            f"imported here ({exc})") from None
        if cfg is not None and n_exc is not None and n_exc != cfg.n_exc:
            raise _bad_url(url, f"n_exc={n_exc} contradicts the configuration (N={cfg.n_exc})")
        try:
            if cfg is None:
                cfg = preset(100 if n_exc is None else n_exc)
            design = ChipTop(cfg, seed=seed, divisor=kwargs["divisor"])
        except (TypeError, ValueError) as exc:
            raise _bad_url(url, f"cannot build the chip: {exc}") from None
        kwargs["name"] = "chip"
    try:
        vboard = VirtualBoard.start(design, **kwargs)
    except failures as exc:
        raise LinkError(f"cannot start the virtual board for {url}: {exc}") from None
    try:
        # The stable path, when there is one, so that the link can be reopened after an unplug.
        inner_url = vboard.link_url if path is not None and kind == "uart" else vboard.url
        want = "pcie" if kind == "pcie" else "serial"
        if parse_url(inner_url)[0] != want:
            raise LinkError(f"the virtual board's URL {inner_url!r} is not a {want}:// URL")
        inner = open_link(inner_url)
    except BaseException:
        _stop(vboard)
        raise
    return SimLink(vboard, inner, url)


def open_link(url: str, *, cfg=None) -> Link:
    """The link a URL names (see the module documentation).

    Parameters
    ----------
    url : str
        ``serial://…``, ``pcie://…`` or ``sim://…``.
    cfg : NetworkConfig, optional
        Configuration a virtual board's chip is built for (``sim://`` only).

    Raises
    ------
    LinkError
        Bad URL, missing device, no permission, or no virtual board.
    """
    scheme, path, options = parse_url(url)
    if scheme == "serial":
        if not path:
            raise _bad_url(url, "no serial device given")
        baud = _int_option(url, options, "baud", DEFAULT_BAUD, minimum=1)
        rtscts = _int_option(url, options, "rtscts", 0)
        if options:
            raise _bad_url(url, f"unknown option(s) {sorted(options)}; serial:// takes "
                                f"baud and rtscts")
        return SerialLink(path, baud, rtscts=bool(rtscts))
    if scheme == "pcie":
        if not path:
            raise _bad_url(url, "no XDMA device given")
        channel = _int_option(url, options, "channel", 0)
        if options:
            raise _bad_url(url, f"unknown option(s) {sorted(options)}; pcie:// takes channel")
        return PcieLink(path, channel)
    return _open_sim(url, path, options, cfg)

