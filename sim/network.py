"""The two models of the sym-STDP network behind one API.

:class:`FloatModel` is the paper's network in float64; :class:`GoldenModel` is the integer
datapath of the gateware, bit for bit. Both present images one at a time with the
re-presentation rule, learn with sym-STDP (or the asymmetric rule), rescale weights, and read
out predictions from the C layer and by the Diehl & Cook vote over E neurons.

>>> from symspike.firmware.config import preset
>>> model = GoldenModel(preset(100), seed=1)
>>> result = model.present(image, label, phase="both")      # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..firmware.config import NetworkConfig
from . import float_kernel, golden_kernel
from .fixed import K_INDEX, derive, to_array
from .rng import dither_hash, rate_thresholds, stream_seeds, teacher_threshold

__all__ = ["Model", "FloatModel", "GoldenModel", "PHASES", "Presentation", "make_model",
           "CheckpointError"]

#: Training phases: what learns during a presentation.
#: ``"both"`` — input→E and E→C with the teacher (simultaneous training);
#: ``"hidden"`` — input→E and θ only (first stage of layer-by-layer training);
#: ``"output"`` — E→C only with the teacher, hidden layer frozen (second stage);
#: ``"test"`` — nothing learns, C neurons are ordinary LIF neurons.
PHASES = ("both", "hidden", "output", "test")
_FLAGS = {  # learn_in, learn_ec, teacher
    "both": (True, True, True),
    "hidden": (True, False, False),
    "output": (False, True, True),
    "test": (False, False, False),
}
CHECKPOINT_VERSION = 1
#: Learning-rate constants that the learning-rate register scales (both models).
_ETA_FIELDS = ("eta_in", "eta_ec", "eta_in_dep", "eta_ec_dep")


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class Presentation:
    """Outcome of presenting one image (its last, successful presentation)."""

    counts_e: np.ndarray
    counts_c: np.ndarray
    presentations: int
    intensity: int


class Model:
    """Common driver of both models; use :class:`FloatModel` or :class:`GoldenModel`."""

    kind = ""

    def __init__(self, cfg: NetworkConfig, seed: int = 0):
        if not isinstance(cfg, NetworkConfig):
            raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, not {seed!r}")
        self._cfg = cfg
        self._seed = int(seed)
        n = cfg.n_exc
        init = np.random.default_rng(self._seed)
        # The authors draw initial weights uniformly in [0, 0.3) at a resolution of 0.001.
        self._w_in_init = np.floor(init.uniform(0, cfg.w_init_max, (cfg.n_input, n)) * 1000) / 1000
        self._w_ec_init = np.floor(init.uniform(0, cfg.w_init_max, (n, cfg.n_classes)) * 1000) / 1000
        seeds = stream_seeds(self._seed, cfg.encoder_lanes)
        self.rng = np.array(list(seeds["encoder"]) + [seeds["teacher"], seeds["event"]],
                            dtype=np.int64)
        self._teacher_thr = teacher_threshold(cfg.teacher_p)
        self._thresholds = {}
        self._alloc()
        self.set_weights(self._w_in_init, self._w_ec_init)
        self.images_seen = 0
        self._votes = np.zeros((cfg.n_classes, n), dtype=np.float64)
        self._vote_n = np.zeros(cfg.n_classes, dtype=np.float64)
        self.reset_state()

    # ----------------------------------------------------------------- properties
    @property
    def cfg(self) -> NetworkConfig:
        return self._cfg

    @property
    def seed(self) -> int:
        return self._seed

    # ----------------------------------------------------------------- to override
    def _alloc(self):
        raise NotImplementedError

    def _run(self, nsteps, nz_idx, nz_thr, label, input_on, flags, counts_e, counts_c):
        raise NotImplementedError

    def _scale(self, which):
        raise NotImplementedError

    def _decay_theta(self):
        raise NotImplementedError

    def set_weights(self, w_in=None, w_ec=None):
        """Load real-valued weights (either may be omitted); the golden model rounds down."""
        if w_in is not None:
            self._put(self.w_in, w_in, self._cfg.wmax_in)
        if w_ec is not None:
            self._put(self.w_ec, w_ec, self._cfg.wmax_ec)

    def _put(self, dest, w, wmax):
        raise NotImplementedError

    def reinit_output(self):
        """Re-draw the E→C weights from the run's initial draw (layer-by-layer training)."""
        self.set_weights(w_ec=self._w_ec_init)

    def weights(self) -> dict:
        """Weights and θ in real units: ``w_in`` (784, N), ``w_ec`` (N, 10), ``theta`` (N,)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- simulation
    def reset_state(self):
        """Return every neuron, conductance, trace and pending spike to rest (θ and weights stay)."""
        self.se[:] = 0
        self.si[:] = 0
        self.sc[:] = 0
        self.x_in[:] = 0
        self.se[golden_kernel.E_V] = self._v_rest_e
        self.si[golden_kernel.I_V] = self._v_rest_i
        self.sc[golden_kernel.C_V] = self._v_rest_i
        for p in (self.pend_in, self.pend_e, self.pend_i, self.pend_c):
            p[:] = 0
        self._fresh = True

    def _rate_thr(self, intensity):
        thr = self._thresholds.get(intensity)
        if thr is None:
            thr = self._thresholds[intensity] = rate_thresholds(self._cfg.dt, intensity)
        return thr

    def present(self, image, label: int = -1, phase: str = "test") -> Presentation:
        """Present one 28×28 uint8 image with the re-presentation rule.

        While the E layer fires fewer than ``min_spikes`` spikes, the intensity rises by one
        and the image is shown again (up to ``intensity_max``). Learning, when ``phase``
        learns, stays on during failed presentations; only the last one's counts are returned.
        """
        if phase not in _FLAGS:
            raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
        cfg = self._cfg
        learn_in, learn_ec, teacher = _FLAGS[phase]
        if teacher and not 0 <= label < cfg.n_classes:
            raise ValueError(f"phase {phase!r} needs a label in 0..9, not {label!r}")
        flat = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)
        if flat.shape[0] != cfg.n_input:
            raise ValueError(f"an image must have {cfg.n_input} pixels, not {flat.shape[0]}")
        nz_idx = np.flatnonzero(flat).astype(np.int64)
        pixels = flat[nz_idx]
        intensity = cfg.intensity_init
        presentations = 0
        scratch_e = np.zeros(cfg.n_exc, dtype=np.int64)
        scratch_c = np.zeros(cfg.n_classes, dtype=np.int64)
        while True:
            presentations += 1
            if learn_in:
                self._scale("in")
            if learn_ec:
                self._scale("ec")
            if cfg.rest == "reset":
                self.reset_state()
            counts_e = np.zeros(cfg.n_exc, dtype=np.int64)
            counts_c = np.zeros(cfg.n_classes, dtype=np.int64)
            nz_thr = self._rate_thr(intensity)[pixels]
            self._run(cfg.steps_present, nz_idx, nz_thr, label if teacher else -1, True,
                      (learn_in, learn_ec, teacher), counts_e, counts_c)
            if cfg.rest == "simulate" and cfg.steps_rest:
                self._run(cfg.steps_rest, nz_idx, nz_thr, -1, False,
                          (learn_in, learn_ec, False), scratch_e, scratch_c)
            if learn_in:
                self._decay_theta()
            if counts_e.sum() >= cfg.min_spikes or intensity >= cfg.intensity_max:
                break
            intensity += 1
        if phase != "test":
            self.images_seen += 1
        return Presentation(counts_e, counts_c, presentations, intensity)

    def run_steps(self, nsteps: int, image=None, label: int = -1, phase: str = "test",
                  intensity: int | None = None):
        """Advance ``nsteps`` time steps from the present state, without scaling or reset.

        The unit of the gateware benches and the model tests: ``image`` (or none: no input)
        drives the encoder at ``intensity``; returns the E and C spike counts of these steps.
        """
        if phase not in _FLAGS:
            raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
        learn_in, learn_ec, teacher = _FLAGS[phase]
        self._fresh = False     # the caller may have set any trace
        if image is None:
            nz_idx = np.zeros(0, dtype=np.int64)
            nz_thr = np.zeros(0, dtype=np.int64)
        else:
            flat = np.ascontiguousarray(image, dtype=np.uint8).reshape(-1)
            nz_idx = np.flatnonzero(flat).astype(np.int64)
            nz_thr = self._rate_thr(intensity or self._cfg.intensity_init)[flat[nz_idx]]
        counts_e = np.zeros(self._cfg.n_exc, dtype=np.int64)
        counts_c = np.zeros(self._cfg.n_classes, dtype=np.int64)
        self._run(int(nsteps), nz_idx, nz_thr, label if teacher else -1, image is not None,
                  (learn_in, learn_ec, teacher), counts_e, counts_c)
        return counts_e, counts_c

    def _kernel_args(self, nz_idx, nz_thr, label, nsteps, input_on, flags, counts_e, counts_c):
        learn_in, learn_ec, teacher = flags
        return (self.w_in, self.w_ec, self.theta, self.se, self.si, self.sc, self.x_in,
                self.pend_in, self.pend_e, self.pend_i, self.pend_c, self.rng,
                nz_idx, nz_thr, label, self._teacher_thr, nsteps, input_on, learn_in,
                learn_ec, teacher, self._cfg.rule == "asym", counts_e, counts_c)

    # ----------------------------------------------------------------- readouts
    def record_vote(self, counts_e, label):
        """Add a training response to the Diehl & Cook label assignment."""
        self._votes[label] += counts_e
        self._vote_n[label] += 1

    def decay_votes(self, factor: float):
        """Forget old responses (``factor`` < 1) so assignments follow the latest weights."""
        self._votes *= factor
        self._vote_n *= factor

    def assignments(self) -> np.ndarray:
        """Class of each E neuron: the class of highest mean response (−1: never fired)."""
        mean = self._votes / np.maximum(self._vote_n, 1e-12)[:, None]
        assign = np.argmax(mean, axis=0)
        assign[mean.max(axis=0) <= 0] = -1
        return assign

    def vote(self, counts_e, assign=None) -> int:
        """Diehl & Cook readout: the class whose assigned neurons fire most on average."""
        assign = self.assignments() if assign is None else assign
        best, best_rate = 0, -1.0
        for c in range(self._cfg.n_classes):
            members = assign == c
            rate = counts_e[members].mean() if members.any() else 0.0
            if rate > best_rate:
                best, best_rate = c, rate
        return best

    @staticmethod
    def classify(counts_c) -> int:
        """C-layer readout: the C neuron with most spikes, ties to the lower index."""
        return int(np.argmax(counts_c))

    def infer(self, images, progress=None) -> dict:
        """Test-mode presentations of ``images``.

        Returns ``pred`` (C readout), ``pred_vote``, ``counts`` (E spike counts) and
        ``counts_c``.
        """
        images = np.asarray(images)
        m = images.shape[0]
        counts = np.zeros((m, self._cfg.n_exc), dtype=np.uint16)
        counts_c = np.zeros((m, self._cfg.n_classes), dtype=np.uint16)
        pred = np.zeros(m, dtype=np.int64)
        pred_vote = np.zeros(m, dtype=np.int64)
        assign = self.assignments()
        for k in range(m):
            res = self.present(images[k], -1, "test")
            counts[k] = np.minimum(res.counts_e, 65535)
            counts_c[k] = np.minimum(res.counts_c, 65535)
            pred[k] = self.classify(res.counts_c)
            pred_vote[k] = self.vote(res.counts_e, assign)
            if progress is not None:
                progress(1)
        return {"pred": pred, "pred_vote": pred_vote, "counts": counts, "counts_c": counts_c}

    def set_eta_scale(self, scale: float):
        """Multiply both learning rates by ``scale`` (the chip's learning-rate register).

        The golden model rounds the scaled constants as :mod:`~symspike.sim.fixed` does.
        """
        if not 0.0 <= scale <= 16.0:
            raise ValueError(f"learning-rate scale must be in [0, 16], not {scale}")
        self._eta_scale = float(scale)
        self._apply_eta(self._eta_scale)

    def _apply_eta(self, scale):
        raise NotImplementedError

    def finish_training(self):
        """Apply the synaptic scaling once more, so test weights are the scaled ones."""
        self._scale("in")
        self._scale("ec")

    # ----------------------------------------------------------------- checkpoints
    _STATE = ("w_in", "w_ec", "theta", "rng", "_votes", "_vote_n")

    def state_dict(self) -> dict:
        """Everything that training changes (arrays are copies)."""
        state = {name.lstrip("_"): np.array(getattr(self, name)) for name in self._STATE}
        state["images_seen"] = np.array(self.images_seen)
        return state

    def load_state_dict(self, state: dict):
        for name in self._STATE:
            key = name.lstrip("_")
            if key not in state:
                raise CheckpointError(f"checkpoint has no {key!r}")
            cur = getattr(self, name)
            new = np.asarray(state[key])
            if new.shape != cur.shape:
                raise CheckpointError(f"checkpoint {key!r} has shape {new.shape}, the model "
                                      f"needs {cur.shape}: was it made for another network size?")
            cur[...] = new
        self.images_seen = int(state.get("images_seen", 0))

    def save(self, path, extra: dict | None = None, state: dict | None = None):
        """Write a checkpoint atomically: a crash leaves the previous file whole.

        ``state`` (a :meth:`state_dict`) is written instead of the present state if given.
        """
        path = Path(path)
        meta = {"version": CHECKPOINT_VERSION, "kind": self.kind, "seed": self._seed,
                "config": self._cfg.to_dict(), "extra": extra or {}}
        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                            **(state if state is not None else self.state_dict()))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @staticmethod
    def read_checkpoint(path) -> tuple[dict, dict]:
        """``(meta, state)`` of a checkpoint file, or :class:`CheckpointError`."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {k: data[k] for k in data.files}
            meta = json.loads(bytes(state.pop("meta")).decode())
        except Exception as exc:  # zip, json and numpy errors all mean the same here
            raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); "
                                  f"use an older checkpoint or start again") from None
        if meta.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, "
                                  f"this version reads {CHECKPOINT_VERSION}")
        return meta, state

    @classmethod
    def load(cls, path) -> "Model":
        """A model restored from a checkpoint written by :meth:`save`."""
        meta, state = cls.read_checkpoint(path)
        try:
            cfg = NetworkConfig.from_dict(meta["config"])
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: bad configuration ({exc})") from None
        model = make_model(meta["kind"], cfg, meta["seed"])
        model.load_state_dict(state)
        return model


class FloatModel(Model):
    """The paper's network in float64 (the float reference)."""

    kind = "float"

    def _alloc(self):
        cfg = self._cfg
        n = cfg.n_exc
        self._P = float_kernel.params(cfg)
        self.w_in = np.zeros((cfg.n_input, n))
        self.w_ec = np.zeros((n, cfg.n_classes))
        self.theta = np.full(n, cfg.theta_init)
        self.se = np.zeros((6, n))
        self.si = np.zeros((3, n))
        self.sc = np.zeros((4, cfg.n_classes))
        self.x_in = np.zeros(cfg.n_input)
        self.pend_in = np.zeros(cfg.n_input, dtype=np.int64)
        self.pend_e = np.zeros(n, dtype=np.int64)
        self.pend_i = np.zeros(n, dtype=np.int64)
        self.pend_c = np.zeros(cfg.n_classes, dtype=np.int64)
        self._v_rest_e = cfg.e_v_rest
        self._v_rest_i = cfg.i_v_rest
        steps = cfg.steps_present + cfg.steps_rest
        self._theta_keep = (1.0 - cfg.dt / cfg.tau_theta) ** steps

    def _apply_eta(self, scale):
        base = float_kernel.params(self._cfg)
        for name in _ETA_FIELDS:
            i = float_kernel.P_FIELDS.index(name)
            self._P[i] = base[i] * scale

    def _run(self, nsteps, nz_idx, nz_thr, label, input_on, flags, counts_e, counts_c):
        float_kernel.present(self._P, *self._kernel_args(nz_idx, nz_thr, label, nsteps,
                                                         input_on, flags, counts_e, counts_c))

    def _scale(self, which):
        if which == "in":
            float_kernel.scale_columns(self.w_in, self._cfg.target_in)
        else:
            float_kernel.scale_columns(self.w_ec, self._cfg.target_ec)

    def _decay_theta(self):
        self.theta *= self._theta_keep

    def _put(self, dest, w, wmax):
        dest[...] = np.clip(w, 0, wmax)

    def weights(self) -> dict:
        return {"w_in": self.w_in.astype(np.float32), "w_ec": self.w_ec.astype(np.float32),
                "theta": self.theta.astype(np.float32)}


class GoldenModel(Model):
    """The integer datapath of the gateware (see ``docs/formats.md``)."""

    kind = "golden"

    def _alloc(self):
        cfg = self._cfg
        n = cfg.n_exc
        self.const = derive(cfg)
        self._K = to_array(self.const)
        self._lut = np.array(self.const.theta_lut, dtype=np.int64)
        bits = max(self.const.sr, 1)
        self._hash_in = dither_hash(cfg.n_input, bits)
        self._hash_e = dither_hash(n, bits)
        self._hash_c = dither_hash(cfg.n_classes, bits)
        self.w_in = np.zeros((cfg.n_input, n), dtype=np.int32)
        self.w_ec = np.zeros((n, cfg.n_classes), dtype=np.int32)
        self.theta = np.full(n, self.const.theta_init, dtype=np.int64)
        self.se = np.zeros((6, n), dtype=np.int64)
        self.si = np.zeros((3, n), dtype=np.int64)
        self.sc = np.zeros((4, cfg.n_classes), dtype=np.int64)
        self.x_in = np.zeros(cfg.n_input, dtype=np.int64)
        self.pend_in = np.zeros(cfg.n_input, dtype=np.int64)
        self.pend_e = np.zeros(n, dtype=np.int64)
        self.pend_i = np.zeros(n, dtype=np.int64)
        self.pend_c = np.zeros(cfg.n_classes, dtype=np.int64)
        self._v_rest_e = self.const.e_v_rest
        self._v_rest_i = self.const.i_v_rest
        self._all_inputs = np.arange(cfg.n_input, dtype=np.int64)
        self._fresh = False

    def _apply_eta(self, scale):
        for name in _ETA_FIELDS:
            self._K[K_INDEX[name]] = int(np.floor(getattr(self.const, name) * scale + 0.5))

    def _run(self, nsteps, nz_idx, nz_thr, label, input_on, flags, counts_e, counts_c):
        # After a reset only the image's pixels can have non-zero traces.
        trace_idx = nz_idx if self._fresh and input_on else self._all_inputs
        golden_kernel.present(self._K, self._lut, self._hash_in, self._hash_e, self._hash_c,
                              *self._kernel_args(nz_idx, nz_thr, label, nsteps, input_on,
                                                 flags, counts_e, counts_c), trace_idx)
        self._fresh = False

    def _scale(self, which):
        k = self.const
        if which == "in":
            golden_kernel.scale_columns(self.w_in, k.target_in, k.recip_frac, k.w_max, k.sr,
                                        self.rng, self._hash_in)
        else:
            golden_kernel.scale_columns(self.w_ec, k.target_ec, k.recip_frac, k.w_max, k.sr,
                                        self.rng, self._hash_e)

    def _decay_theta(self):
        golden_kernel.decay_theta(self.theta, self.const.k_theta)

    def quantize(self, w, wmax) -> np.ndarray:
        """Weight codes of real weights ``w`` (round down, clip to the code range)."""
        codes = np.floor(np.asarray(w, dtype=np.float64) / wmax * (1 << self.const.weight_bits))
        return np.clip(codes, 0, self.const.w_max).astype(np.int32)

    def _put(self, dest, w, wmax):
        dest[...] = self.quantize(w, wmax)

    def weights(self) -> dict:
        scale = 1.0 / (1 << self.const.weight_bits)
        return {"w_in": (self.w_in * (self._cfg.wmax_in * scale)).astype(np.float32),
                "w_ec": (self.w_ec * (self._cfg.wmax_ec * scale)).astype(np.float32),
                "theta": (self.theta / float(1 << self.const.theta_frac)).astype(np.float32)}


MODELS = {"float": FloatModel, "golden": GoldenModel}


def make_model(kind: str, cfg: NetworkConfig, seed: int = 0) -> Model:
    """A model of ``kind`` (``"float"`` or ``"golden"``)."""
    try:
        return MODELS[kind](cfg, seed)
    except KeyError:
        raise ValueError(f"model must be one of {sorted(MODELS)}, not {kind!r}") from None
