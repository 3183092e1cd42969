"""Shared fixtures: real MNIST images from the embedded subset (no data folder needed), and
the N = 100 chip's virtual-board executable."""

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
