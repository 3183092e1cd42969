"""The sym-STDP network written in Brian2: a speed baseline and an independent cross-check.

:func:`run_brian2` builds the network of :class:`symspike.sim.network.FloatModel` from a
:class:`~symspike.firmware.config.NetworkConfig` with Brian2's own objects (``NeuronGroup``,
``Synapses``, ``PoissonGroup``) and trains it image by image, with the re-presentation rule
and synaptic scaling done from Python between presentations. It shares no code and no random
numbers with the two models in this package, so agreement in firing and weights is evidence
that both implement the paper's network rather than the same mistake; its throughput is what
``symspike bench speed --vs-brian2`` compares against.

Where Brian2's schedule differs from the float model's step order (``sim/float_kernel.py``):

* a teacher spike reaches its C neuron one time step later (the teacher is a separate
  ``PoissonGroup`` that makes the C neuron fire in the next step);
* for an E and a C spike in the same step, the E→C post-spike update sees the E trace before
  that step's increment;
* θ decays in every simulated step instead of once per presentation, where the float model
  also counts the 150 ms rest that a state reset replaces; the two differ by less than
  3e-5·θ per presentation.

Everything else (forward-Euler membranes and traces, exact conductance decay, the V floor,
refractory steps, one trace increment per spike, weight clipping, scaling targets, input
rates, initial weights) follows the float model.

Brian2 is an optional dependency (``pip install 'symspike[bench]'``); importing this module
without it raises :class:`ImportError`.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

try:
    import brian2 as b2
except ImportError:  # the message is what the CLI shows the user
    raise ImportError("Brian2 is an optional extra: pip install 'symspike[bench]'") from None

from ..firmware.config import NetworkConfig

__all__ = ["run_brian2", "BrianNetwork", "PHASES"]

#: What learns in each phase: (input→E and θ, E→C, teacher on), as in ``sim/network.py``.
_FLAGS = {
    "both": (True, True, True),
    "hidden": (True, False, False),
    "output": (False, True, True),
    "test": (False, False, False),
}
PHASES = tuple(_FLAGS)
TARGETS = ("cython", "numpy")

_mV, _ms, _Hz = b2.mV, b2.ms, b2.Hz


def _scale_columns(w: np.ndarray, target: float) -> np.ndarray:
    """Rescale every column of ``w`` to sum ``target``; all-zero columns stay zero."""
    sums = w.sum(axis=0)
    factor = np.divide(target, sums, out=np.zeros_like(sums), where=sums > 0)
    factor[sums <= 0] = 1.0
    return w * factor


class BrianNetwork:
    """The sym-STDP network as Brian2 objects, built once and reused for every image.

    Parameters
    ----------
    cfg : NetworkConfig
        The network; ``n_exc``, the neuron, synapse and plasticity constants are used.
    seed : int
        Seeds the initial weights (the same draw as :class:`~symspike.sim.network.Model`)
        and Brian2's random numbers.
    """

    def __init__(self, cfg: NetworkConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = int(seed)
        # One clock shared by every object keeps Brian2 on its single-clock loop without
        # touching the global defaultclock.
        self.clock = clock = b2.Clock(dt=cfg.dt * _ms, name="clock*")
        b2.seed(self.seed)
        n, n_in, n_c = cfg.n_exc, cfg.n_input, cfg.n_classes
        ns = {
            "tau_e": cfg.e_tau_m * _ms, "tau_i": cfg.i_tau_m * _ms,
            "tau_trace": cfg.tau_trace * _ms, "tau_theta": cfg.tau_theta * _ms,
            "e_rest": cfg.e_v_rest * _mV, "e_reset": cfg.e_v_reset * _mV,
            "e_floor": cfg.e_v_floor * _mV,
            "thr_offset": (cfg.e_v_thresh - cfg.theta_offset) * _mV,
            "theta_plus": cfg.theta_plus * _mV,
            "i_rest": cfg.i_v_rest * _mV, "i_reset": cfg.i_v_reset * _mV,
            "i_thresh": cfg.i_v_thresh * _mV,
            "e_exc": cfg.e_rev_exc * _mV, "e_inh": cfg.e_rev_inh * _mV,
            "k_ge": cfg.decay_ge, "k_gi": cfg.decay_gi,
            "trace_inc": cfg.trace_inc, "w_ei": cfg.w_ei, "w_ie": cfg.w_ie,
            "wmax_in": cfg.wmax_in, "wmax_ec": cfg.wmax_ec,
        }
        # Brian2 counts a neuron refractory while fewer than `refractory/dt` steps have passed
        # since its spike step; the float model skips `refrac_steps` whole steps after it.
        refractory = (cfg.refrac_steps + 1) * cfg.dt * _ms

        # Input: a hand-made Poisson group, because PoissonGroup cannot carry the per-neuron
        # STDP trace (a per-synapse trace would cost 784·N state variables).
        self.inp = b2.NeuronGroup(
            n_in, """rates : Hz
                     dx/dt = -x / tau_trace : 1""",
            threshold="rand() < rates * dt", reset="x += trace_inc",
            method="euler", namespace=ns, clock=clock, name="inp")
        # The float model adds the input trace before the post-spike updates of the same step.
        self.inp.resetter["spike"].when = "before_synapses"

        self.exc = b2.NeuronGroup(
            n, """dv/dt = (e_rest - v + ge * (e_exc - v) + gi * (e_inh - v)) / tau_e
                          : volt (unless refractory)
                  dtheta/dt = -learn_theta * theta / tau_theta : volt
                  dx/dt = -x / tau_trace : 1
                  ge : 1
                  gi : 1
                  count : 1
                  learn_theta : 1 (shared)""",
            threshold="v > theta + thr_offset",
            reset="""v = e_reset
                     theta += learn_theta * theta_plus * (10 * mV) / abs(theta - 10 * mV)
                     x += trace_inc
                     count += 1""",
            refractory=refractory, method="euler", namespace=ns, clock=clock,
            name="exc")
        # Conductances decay by the exact factor exp(-dt/τ) after the membrane has used them;
        # Brian2's solvers would either Euler-step them or integrate V exponentially, so this
        # runs as its own operation between integration and threshold, where the float model
        # also applies the V floor.
        self.exc.run_regularly("""v = clip(v, e_floor, 1 * volt)
                                  ge = ge * k_ge
                                  gi = gi * k_gi""", when="before_thresholds",
                               clock=clock, name="exc_decay")

        self.inh = b2.NeuronGroup(
            n, """dv/dt = (i_rest - v + ge * (e_exc - v)) / tau_i : volt (unless refractory)
                  ge : 1""",
            threshold="v > i_thresh", reset="v = i_reset", refractory=refractory,
            method="euler", namespace=ns, clock=clock, name="inh")
        self.inh.run_regularly("ge = ge * k_ge", when="before_thresholds", clock=clock,
                              name="inh_decay")

        # C neurons: ordinary LIF at test; while `clamp` is set (training) they ignore their
        # input and fire exactly when the teacher group has made them (`forced`).
        self.cla = b2.NeuronGroup(
            n_c, """dv/dt = (1 - clamp) * (i_rest - v + ge * (e_exc - v)) / tau_i : volt
                    dx/dt = -x / tau_trace : 1
                    ge : 1
                    forced : 1
                    count : 1
                    clamp : 1 (shared)""",
            threshold="(clamp > 0.5 and forced > 0.5) or (clamp < 0.5 and v > i_thresh)",
            reset="""v = i_reset
                     forced = 0
                     x += trace_inc
                     count += 1""",
            method="euler", namespace=ns, clock=clock, name="cla")
        self.cla.run_regularly("ge = ge * k_ge", when="before_thresholds", clock=clock,
                              name="cla_decay")
        self.teacher = b2.PoissonGroup(n_c, rates=0 * _Hz, clock=clock, name="teacher")

        # Plastic synapses: sym-STDP potentiates on both spike orders (η_pre < 0 gives the
        # classic asymmetric rule); traces live in the neurons so each spike adds trace_inc once.
        stdp = """w : 1
                  eta_prespike : 1 (shared)
                  eta_postspike : 1 (shared)"""
        self.s_in = b2.Synapses(
            self.inp, self.exc, stdp,
            on_pre="""ge_post += w
                      w = clip(w + eta_prespike * x_post, 0, wmax_in)""",
            on_post="w = clip(w + eta_postspike * x_pre, 0, wmax_in)",
            namespace=ns, clock=clock, name="s_in")
        self.s_in.connect()
        self.s_ec = b2.Synapses(
            self.exc, self.cla, stdp,
            on_pre="""ge_post += w
                      w = clip(w + eta_prespike * x_post, 0, wmax_ec)""",
            on_post="w = clip(w + eta_postspike * x_pre, 0, wmax_ec)",
            namespace=ns, clock=clock, name="s_ec")
        self.s_ec.connect()
        self.s_ei = b2.Synapses(self.exc, self.inh, on_pre="ge_post += w_ei",
                                namespace=ns, clock=clock, name="s_ei")
        self.s_ei.connect(j="i")
        self.s_ie = b2.Synapses(self.inh, self.exc, on_pre="gi_post += w_ie",
                                namespace=ns, clock=clock, name="s_ie")
        self.s_ie.connect(condition="i != j")
        self.s_teach = b2.Synapses(self.teacher, self.cla, on_pre="forced_post = 1",
                                   clock=clock, name="s_teach")
        self.s_teach.connect(j="i")

        self.net = b2.Network(self.inp, self.exc, self.inh, self.cla, self.teacher,
                              self.s_in, self.s_ec, self.s_ei, self.s_ie, self.s_teach)

        # Scaling works on the weights as (pre, post) matrices; that needs Brian2's synapse
        # order to be row-major, which connect() on a full matrix gives.
        for syn, rows, cols in ((self.s_in, n_in, n), (self.s_ec, n, n_c)):
            if not (np.array_equal(syn.i[:], np.repeat(np.arange(rows), cols))
                    and np.array_equal(syn.j[:], np.tile(np.arange(cols), rows))):
                raise RuntimeError(f"{syn.name}: unexpected synapse order")
        self.shape_in, self.shape_ec = (n_in, n), (n, n_c)

        # The same initial draw as the float model, so both start from identical weights.
        init = np.random.default_rng(self.seed)
        self.w_in_init = np.floor(init.uniform(0, cfg.w_init_max, self.shape_in) * 1000) / 1000
        self.w_ec_init = np.floor(init.uniform(0, cfg.w_init_max, self.shape_ec) * 1000) / 1000
        self.restart()
        self.last_scaled_in = None
        self.last_scaled_ec = None

    # ------------------------------------------------------------------------- state
    def restart(self):
        """Initial weights and θ, every neuron at rest."""
        self.s_in.w[:] = self.w_in_init.ravel()
        self.s_ec.w[:] = self.w_ec_init.ravel()
        self.exc.theta = self.cfg.theta_init * _mV
        self.reset_state()

    def reset_state(self):
        """Potentials to rest; conductances, traces and refractory timers to zero."""
        cfg = self.cfg
        long_ago = -1e4 * b2.second
        self.inp.x = 0
        self.exc.v = cfg.e_v_rest * _mV
        self.exc.ge = self.exc.gi = self.exc.x = 0
        self.exc.lastspike = long_ago
        self.exc.not_refractory = True
        self.inh.v = cfg.i_v_rest * _mV
        self.inh.ge = 0
        self.inh.lastspike = long_ago
        self.inh.not_refractory = True
        self.cla.v = cfg.i_v_rest * _mV
        self.cla.ge = self.cla.x = self.cla.forced = 0

    def set_phase(self, phase: str):
        """Switch learning, θ adaptation and teacher clamping on or off as ``phase`` says."""
        cfg = self.cfg
        learn_in, learn_ec, teacher = _FLAGS[phase]
        sign = -cfg.asym_ratio if cfg.rule == "asym" else 1.0
        self.s_in.eta_prespike = sign * cfg.eta_in if learn_in else 0.0
        self.s_in.eta_postspike = cfg.eta_in if learn_in else 0.0
        self.s_ec.eta_prespike = sign * cfg.eta_ec if learn_ec else 0.0
        self.s_ec.eta_postspike = cfg.eta_ec if learn_ec else 0.0
        self.exc.learn_theta = 1.0 if learn_in else 0.0
        self.cla.clamp = 1.0 if teacher else 0.0
        self.flags = (learn_in, learn_ec, teacher)

    def weights(self) -> dict:
        """``w_in`` (784, N), ``w_ec`` (N, 10) and ``theta`` (N,, mV) as float64 copies."""
        return {"w_in": np.array(self.s_in.w[:]).reshape(self.shape_in),
                "w_ec": np.array(self.s_ec.w[:]).reshape(self.shape_ec),
                "theta": np.asarray(self.exc.theta[:] / _mV, dtype=np.float64)}

    def _scale(self, syn, shape, target):
        syn.w[:] = _scale_columns(np.asarray(syn.w[:]).reshape(shape), target).ravel()
        # Read back from Brian2 so the check covers the write as well as the arithmetic.
        return np.asarray(syn.w[:]).reshape(shape).sum(axis=0)

    # ------------------------------------------------------------------------- running
    def _input_rates(self, flat, intensity):
        # Pixel p fires at p/8 · intensity Hz (63.75 Hz at the initial intensity of 2).
        return flat.astype(np.float64) / 8.0 * intensity

    def _schedule(self, images, labels, counts_e, shown):
        """Set up every segment of the presentations and yield its length in ms.

        The caller runs the network for each yielded length; in between, this generator
        reads the spike counts, applies the re-presentation rule, scales weights and sets
        the input and teacher rates. ``counts_e[k]`` and ``shown[k]`` receive the E counts of
        image ``k``'s last presentation and how many times it was shown.
        """
        cfg = self.cfg
        learn_in, learn_ec, teacher = self.flags
        for k in range(len(images)):
            flat = np.asarray(images[k], dtype=np.uint8).reshape(-1)
            teach_rates = np.zeros(cfg.n_classes)
            if teacher:
                teach_rates[int(labels[k])] = cfg.teacher_rate
            intensity = cfg.intensity_init
            shown[k] = 0
            while True:
                shown[k] += 1
                if learn_in:
                    self.last_scaled_in = self._scale(self.s_in, self.shape_in, cfg.target_in)
                if learn_ec:
                    self.last_scaled_ec = self._scale(self.s_ec, self.shape_ec, cfg.target_ec)
                if cfg.rest == "reset":
                    self.reset_state()
                self.exc.count = 0
                self.cla.count = 0
                self.inp.rates = self._input_rates(flat, intensity) * _Hz
                self.teacher.rates = teach_rates * _Hz
                yield cfg.t_present
                counts_e[k] = self.exc.count[:]
                # The teacher is off during every rest; learning stays as the phase says.
                self.inp.rates = 0 * _Hz
                self.teacher.rates = 0 * _Hz
                if cfg.rest == "simulate" and cfg.t_rest > 0:
                    yield cfg.t_rest
                if counts_e[k].sum() >= cfg.min_spikes or intensity >= cfg.intensity_max:
                    break
                intensity += 1

    def run_images(self, images, labels=None, one_run: bool = True):
        """Present ``images`` (re-presentation rule included) in the current phase.

        Parameters
        ----------
        images : ndarray
            ``(m, 784)`` uint8 images.
        labels : ndarray, optional
            ``(m,)`` labels, used when the phase has the teacher on.
        one_run : bool
            Run all presentations inside one ``Network.run``, switching images from a
            ``NetworkOperation``; otherwise call ``Network.run`` once per presentation and
            rest. Every ``Network.run`` regenerates Brian2's code objects and collects
            garbage (about 0.3 s on a desktop), which would otherwise dominate a 350 ms
            presentation.

        Returns
        -------
        counts_e : ndarray
            ``(m, N)`` E spike counts of each image's last presentation.
        shown : ndarray
            ``(m,)`` number of presentations of each image.
        """
        cfg = self.cfg
        m = len(images)
        labels = np.full(m, -1) if labels is None else labels
        counts_e = np.zeros((m, cfg.n_exc), dtype=np.int64)
        shown = np.zeros(m, dtype=np.int64)
        schedule = self._schedule(images, labels, counts_e, shown)
        if not one_run:
            for duration in schedule:
                self.net.run(duration * _ms, namespace={})
            return counts_e, shown

        # The operation runs first in every time step (a coarser clock would end the run
        # off the time grid: Network.stop() still finishes the step it is called in).
        left, done = [0], [False]

        def switch():
            if left[0] == 0 and not done[0]:
                try:
                    left[0] = int(round(next(schedule) / cfg.dt))
                except StopIteration:
                    done[0] = True
                    self.net.stop()
                    return
            left[0] -= 1

        op = b2.NetworkOperation(switch, clock=self.clock, when="start", name="switch*")
        self.net.add(op)
        try:
            longest = (cfg.intensity_max - cfg.intensity_init + 1) * (cfg.t_present + cfg.t_rest)
            self.net.run(m * longest * _ms + 2 * cfg.dt * _ms, namespace={})
        finally:
            self.net.remove(op)
        if not done[0]:
            raise RuntimeError("the Brian2 run ended before the last presentation")
        return counts_e, shown


def _build_and_warm_up(cfg, seed, phase, images, labels, target, one_run):
    b2.prefs.codegen.target = target
    net = BrianNetwork(cfg, seed)
    net.set_phase(phase)
    # The first run generates and compiles every code object; keep it out of the timing and
    # start the measured run from the initial state again.
    net.run_images(images[:1], labels[:1], one_run)
    net.restart()
    return net


def run_brian2(cfg: NetworkConfig, images, labels=None, seed: int = 0, phase: str = "both",
               target: str = "cython", one_run: bool = True) -> dict:
    """Present ``images`` to the Brian2 version of the network and time it.

    Parameters
    ----------
    cfg : NetworkConfig
        The network to build (see :func:`symspike.firmware.config.preset`).
    images : array_like
        ``(m, 28, 28)`` or ``(m, 784)`` uint8 images.
    labels : array_like, optional
        ``(m,)`` labels 0..9; needed when ``phase`` uses the teacher.
    seed : int
        Initial weights (identical to the float model's for the same seed) and Brian2's
        random numbers.
    phase : str
        ``"both"``, ``"hidden"``, ``"output"`` or ``"test"``, as for
        :meth:`symspike.sim.network.Model.present`.
    target : str
        Brian2 code-generation target, ``"cython"`` or ``"numpy"``. When Cython code does not
        compile, the run falls back to ``"numpy"`` with a warning.
    one_run : bool
        All presentations in one ``Network.run`` (the default, Brian2 at its best), or one
        ``Network.run`` per presentation and rest, which adds Brian2's per-run set-up cost
        to every image (see :meth:`BrianNetwork.run_images`).

    Returns
    -------
    dict
        ``images``, ``wall_s`` (presentations only: construction and the warm-up image that
        compiles the code are excluded), ``images_per_s``, ``spikes_e`` (mean E spikes of an
        image's last presentation), ``target`` (the one actually used), and for checks
        ``counts_e`` (m, N), ``presentations`` (m,), ``w_in``, ``w_ec``, ``theta`` (final)
        and ``scaled_sums_in`` / ``scaled_sums_ec`` (column sums read back from Brian2 after
        the last synaptic scaling, ``None`` if that layer never learnt).
    """
    if not isinstance(cfg, NetworkConfig):
        raise TypeError(f"cfg must be a NetworkConfig, not {type(cfg).__name__}")
    if phase not in _FLAGS:
        raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    images = np.asarray(images, dtype=np.uint8).reshape(-1, cfg.n_input)
    m = images.shape[0]
    if m == 0:
        raise ValueError("no images to present")
    teacher = _FLAGS[phase][2]
    if labels is None:
        if teacher:
            raise ValueError(f"phase {phase!r} needs labels")
        labels = np.full(m, -1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != m:
        raise ValueError(f"{m} images but {labels.shape[0]} labels")
    if teacher and not np.all((labels >= 0) & (labels < cfg.n_classes)):
        raise ValueError(f"labels must be in 0..{cfg.n_classes - 1}")

    old_target = b2.prefs.codegen.target
    try:
        try:
            net = _build_and_warm_up(cfg, seed, phase, images, labels, target, one_run)
        except Exception as exc:  # a failed compile surfaces as any of several error types
            if target == "numpy":
                raise
            warnings.warn(f"Brian2 target {target!r} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); using 'numpy'",
                          RuntimeWarning, stacklevel=2)
            target = "numpy"
            net = _build_and_warm_up(cfg, seed, phase, images, labels, target, one_run)

        start = time.perf_counter()
        counts, shown = net.run_images(images, labels, one_run)
        wall = time.perf_counter() - start
        final = net.weights()
    finally:
        b2.prefs.codegen.target = old_target

    return {
        "images": m,
        "wall_s": wall,
        "images_per_s": m / wall if wall > 0 else float("inf"),
        "spikes_e": float(counts.sum(axis=1).mean()),
        "target": target,
        "one_run": bool(one_run),
        "counts_e": counts,
        "presentations": shown,
        "w_in": final["w_in"],
        "w_ec": final["w_ec"],
        "theta": final["theta"],
        "scaled_sums_in": net.last_scaled_in,
        "scaled_sums_ec": net.last_scaled_ec,
    }
