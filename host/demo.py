"""``symspike demo``: the main job on the embedded MNIST subset.

1. The golden model and the float reference trained on the embedded 2000 training images,
   tested on its 1000 test images (about 15 s).
2. The chip itself: its Verilog in Verilator as a virtual board, trained online over the
   UART by the host driver on the first ``board_train`` training images and tested on
   ``board_test`` test images, next to the golden model trained on the same images; the
   weights read back are compared bit for bit.
3. Synthesis of the network core for the iCEBreaker's UP5K with its resource report.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["run_demo"]


def run_demo(args, main) -> int:
    """Run the three parts; ``main`` is the CLI's entry point (for the sub-commands)."""
    from . import report
    from .experiment import Experiment, run

    out = Path(args.out)
    results = {}
    print("== 1. golden model and float reference (embedded MNIST subset)")
    for kind in ("float", "golden"):
        exp = Experiment(model=kind, neurons=100, data=None, train=2000, test=1000,
                         eval_every=500, eval_size=500, seed=0)
        results[kind] = run(exp, out=out / kind, progress=not args.quiet)
    paths = report.make_report(out / "golden")
    print(f"pictures: {', '.join(str(p) for p in paths)}")
    g, f = results["golden"], results["float"]
    print(f"golden model {100 * g['accuracy']:.2f} % vs float reference "
          f"{100 * f['accuracy']:.2f} % (C readout, 2000 training images, 1000 test)")

    print(f"\n== 2. the chip in Verilator, trained online over its UART "
          f"({args.board_train} training images, {args.board_test} test)")
    code = main(["train", "--board", "sim://", "--neurons", "100",
                 "--train", str(args.board_train), "--test", str(args.board_test)])
    if code:
        return code

    print("\n== 3. the network core for the iCEBreaker (iCE40 UP5K, N = 100)")
    code = main(["build", "--target", "up5k", "--unit", "core", "--report",
                 str(out / "up5k-core.json")])
    print("The core does not fit the UP5K yet (the report above says by how much), so no "
          "bitstream is written; see docs/RESULTS.md.")
    return 0
