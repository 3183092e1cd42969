"""Shared fixtures: real MNIST images from the embedded subset (no data folder needed), and
the N = 100 chip's virtual-board executable; and the order the suite runs in."""

import pytest

from symspike.host import datasets


@pytest.fixture(scope="session")
def mnist_small():
    """``(x_train, y_train, x_test, y_test)``: the embedded MNIST subset (2000 / 1000)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SYMSPIKE_DATA", raising=False)
        x, y = datasets.load("mnist", "train")
        xt, yt = datasets.load("mnist", "test")
    return x, y, xt, yt


#: The chip the virtual-board tests run: ``sim://`` builds this one for ``--neurons 100
#: --seed 0``, so the command line's runs reuse the cached build.
CHIP_CFG_N = 100
CHIP_SEED = 0
CHIP_DIVISOR = 4


@pytest.fixture(scope="session")
def chip_exe():
    """The N = 100 chip's virtual-board executable (built once and cached by its Verilog;
    a minute or more the first time)."""
    from symspike.firmware.config import preset
    from symspike.sim.cosim import unavailable_reason
    if unavailable_reason("verilator"):
        pytest.skip(unavailable_reason("verilator"))
    from symspike.hdl.chip import ChipTop
    from symspike.sim.vboard import build_vboard
    return build_vboard(ChipTop(preset(CHIP_CFG_N), seed=CHIP_SEED, divisor=CHIP_DIVISOR),
                        "chip", divisor=CHIP_DIVISOR)


#: The suite's longest tests (node id prefixes), longest first: they start first, so that the
#: two workers of ``make test`` (pytest-xdist) end together instead of one of them starting
#: a two-minute bench when the other has nothing left.
LONGEST = (
    "tests/test_core.py::test_cocotb_bench[icarus]",
    "tests/test_core.py::test_cocotb_bench[verilator]",
    "tests/test_cosim_bench.py::test_two_sessions_on_the_virtual_board",
    "tests/test_throughput.py::test_short_run_on_the_virtual_board",
    "tests/test_synapse.py::test_cocotb_bench[verilator",
    "tests/test_fuzz.py::test_fuzz_the_virtual_board",
    "tests/test_faults.py::test_bytes_flipped_on_the_wire",
    "tests/test_synth.py::test_small_network_core_synthesises",
    "tests/test_lif.py::test_cocotb_bench[EI-verilator",
    "tests/test_chip.py::test_training_presentation_matches_golden",
    "tests/test_lif.py::test_cocotb_bench[C-verilator",
    "tests/test_core.py::test_rule_and_rest_variants",
    "tests/test_e2e.py::test_online_training_is_bit_exact",
    "tests/test_scaling.py::test_cocotb_bench[verilator",
    "tests/test_vboard.py::test_cli_runs_a_chip_top",
    "tests/test_core.py::test_training_and_test_presentations",
    "tests/test_encoder.py::test_encoder_cocotb[verilator",
    "tests/test_router.py::test_cocotb_bench[verilator",
    "tests/test_chip.py::test_registers_sequence_and_errors",
)


def _rank(item):
    for k, prefix in enumerate(LONGEST):
        if item.nodeid.startswith(prefix):
            return k
    return len(LONGEST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_rank)       # stable: the rest keep their order
