"""Draw the block diagram of the network core, ``docs/architecture.png``.

Run from the repository root: ``python docs/figures/architecture.py [output.png]``. The
drawing uses only matplotlib's Agg canvas and writes no timestamp, so the same matplotlib
gives the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

OUT = Path(__file__).resolve().parent.parent / "architecture.png"

# Colours by kind of unit.
MEM = "#dbe9f6"      # holds the weights
NEURON = "#fde5cc"   # neuron state
ROUTE = "#e3f1dc"    # spike paths
CTRL = "#eeeeee"     # control and random streams
PHASE_A = "#1f5fa8"
PHASE_B = "#b5540a"
OTHER = "#444444"


def box(ax, x0, y0, x1, y1, title, body="", color=CTRL, dashed=False):
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0,
                                boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=color, ec="#333333", lw=1.1,
                                ls="--" if dashed else "-", zorder=1))
    cx = (x0 + x1) / 2
    if body:
        ax.text(cx, y1 - 0.14, title, ha="center", va="top", fontsize=9.5,
                fontweight="bold", zorder=3)
        ax.text(cx, y1 - 0.46, body, ha="center", va="top", fontsize=7.6,
                linespacing=1.25, zorder=3)
    else:
        ax.text(cx, (y0 + y1) / 2, title, ha="center", va="center", fontsize=9.5,
                fontweight="bold", zorder=3)


def wire(ax, pts, label=None, color=OTHER, at=0, dx=0.0, dy=0.12, dashed=False,
         ha="center", lw=1.3):
    """An orthogonal wire through ``pts`` with an arrowhead at the end; ``label`` is placed
    by segment ``at``."""
    xs, ys = zip(*pts)
    ax.plot(xs[:-1] + (xs[-1],), ys[:-1] + (ys[-1],), color=color, lw=lw,
            ls="--" if dashed else "-", zorder=2, solid_capstyle="butt")
    ax.annotate("", xy=pts[-1], xytext=pts[-2], zorder=2,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, shrinkA=0, shrinkB=0,
                                mutation_scale=11))
    if label:
        (xa, ya), (xb, yb) = pts[at], pts[at + 1]
        ax.text((xa + xb) / 2 + dx, (ya + yb) / 2 + dy, label, ha=ha, va="bottom",
                fontsize=7.4, color=color, zorder=4,
                bbox=dict(fc="white", ec="none", pad=0.4, alpha=0.85))


def draw(path=OUT):
    fig = Figure(figsize=(15, 9.2))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 16.3)
    ax.set_ylim(0, 10)
    ax.axis("off")

    # ------------------------------------------------------------------ control
    box(ax, 3.5, 9.05, 12.8, 9.85, "Sequencer (hdl/core.py)",
        "SCALE_IN → SCALE_EC → RESET → BEGIN → steps: A1 A2 A4 A_WAIT | B → THETA → "
        "CHECK (re-present at intensity + 1 while E spikes < 5)", CTRL)
    box(ax, 0.15, 7.75, 2.75, 8.75, "Host ports",
        "pixels · weights (wreq/wrow)\nneuron state · spike counts", CTRL)
    box(ax, 0.15, 0.35, 2.75, 1.85, "EventWords",
        "xorshift32: one word per\nlearning event (A1, A2, A4)\nand per scaled column, to\n"
        "both synapse memories", CTRL)

    # ------------------------------------------------------------------ spike paths
    box(ax, 0.15, 5.55, 2.75, 7.15, "PoissonEncoder",
        "compacted image\n⌈784/E⌉ × E × (10+8) b\nE xorshift32 lanes", ROUTE)
    ax.add_patch(FancyBboxPatch((3.3, 0.35), 2.4, 8.2, boxstyle="round,pad=0.02",
                                fc="#f4faf1", ec="#5a8f45", lw=1.0, ls="--", zorder=0))
    ax.text(4.5, 8.42, "SpikeRouter (AER)", ha="center", va="top", fontsize=9.5,
            fontweight="bold")
    box(ax, 3.5, 6.05, 5.5, 7.25, "input queue", "784 × 10 b", ROUTE)
    box(ax, 3.5, 3.55, 5.5, 4.75, "E queue", "N × ⌈log₂N⌉ b", ROUTE)
    box(ax, 3.5, 0.55, 5.5, 1.75, "C queue", "10 × 4 b", ROUTE)
    ax.text(4.5, 2.75, "spike counters\nE: N × 10 b, C: 10 × 10 b\nteacher xorshift32",
            ha="center", va="center", fontsize=7.6, linespacing=1.25)

    # ------------------------------------------------------------------ memories
    box(ax, 6.6, 7.55, 9.6, 8.55, "InputTraces",
        "x_in: 784 × 13 b, L per row", MEM)
    box(ax, 6.6, 5.05, 9.6, 6.95, "SynapseMemory input→E",
        "784 × N × 8 b in L skewed banks\nrow: ⌈N/L⌉ cycles, column: ⌈784/L⌉\n"
        "copies x_in, x_E · column sums N × 18 b", MEM)
    box(ax, 6.6, 4.35, 8.9, 4.85, "ScalingUnit input→E", "", CTRL)
    box(ax, 6.6, 2.0, 9.6, 3.45, "SynapseMemory E→C",
        "N × 10 × 8 b in Le = max(min(L, 8), P) banks\nrow: ⌈10/Le⌉ cycles, column: ⌈N/Le⌉\n"
        "copies x_E (bumped), x_C · sums", MEM)
    box(ax, 6.6, 1.3, 8.9, 1.8, "ScalingUnit E→C", "", CTRL)

    # ------------------------------------------------------------------ neurons
    box(ax, 10.5, 5.2, 12.3, 6.5, "Accumulators E", "⌈N/L⌉ × L × 18 b\nin: L/cycle, out: P",
        NEURON)
    box(ax, 10.5, 1.9, 12.3, 3.2, "Accumulators C", "⌈10/Le⌉ × Le sums\nin: Le/cycle, out: 1",
        NEURON)
    box(ax, 13.2, 4.75, 16.1, 6.95, "LIFCore E/I",
        "P pipelines, ⌈N/P⌉ rows each\nE word 72 b (V, ge, gi, ref, x, spike)\n"
        "I word 40 b · θ 30 b · θ-LUT 512 × 30 b\nE→I, I→E applied in the pass", NEURON)
    box(ax, 13.2, 1.65, 16.1, 3.35, "LIFCore C",
        "1 pipeline, 10 × 50 b\n(V, ge, x, spike)\nteacher spike of the label", NEURON)

    # ------------------------------------------------------------------ phase A wires
    wire(ax, [(1.45, 7.75), (1.45, 7.15)], "pixels", OTHER, dx=0.45, dy=-0.05)
    wire(ax, [(5.5, 6.95), (6.25, 6.95), (6.25, 8.05), (6.6, 8.05)],
         "A1 bump x_in[i]", PHASE_A, at=1, dx=-0.2, dy=0.15, ha="right")
    wire(ax, [(5.5, 6.45), (6.6, 6.45)], "A1 row i", PHASE_A, dy=0.06)
    wire(ax, [(8.1, 7.55), (8.1, 6.95)], "x_in copy", PHASE_A, dx=0.45, dy=-0.06)
    wire(ax, [(5.5, 4.5), (6.1, 4.5), (6.1, 5.35), (6.6, 5.35)], "A2 column j",
         PHASE_A, at=2, dy=0.06)
    wire(ax, [(5.5, 3.8), (6.1, 3.8), (6.1, 3.05), (6.6, 3.05)], "A2 row j", PHASE_A,
         at=2, dy=0.06)
    wire(ax, [(5.5, 1.45), (6.1, 1.45), (6.1, 2.3), (6.6, 2.3)], "A4 column c", PHASE_A,
         at=2, dy=0.06)
    wire(ax, [(9.6, 5.85), (10.5, 5.85)], "A: old row", PHASE_A, dy=0.06)
    wire(ax, [(9.6, 2.55), (10.5, 2.55)], "A: old row", PHASE_A, dy=0.06)
    wire(ax, [(7.75, 4.85), (7.75, 5.05)], None, OTHER)
    wire(ax, [(7.75, 1.8), (7.75, 2.0)], None, OTHER)
    wire(ax, [(2.75, 8.0), (4.0, 8.0), (4.0, 7.25)], "AER events", OTHER, at=0, dx=0.1,
         dy=0.02, lw=1.0, dashed=True)

    # ------------------------------------------------------------------ phase B wires
    wire(ax, [(2.75, 6.35), (3.5, 6.35)], "B", PHASE_B, dy=0.06)
    wire(ax, [(12.3, 5.85), (13.2, 5.85)], "B", PHASE_B, dy=0.06)
    wire(ax, [(12.3, 2.55), (13.2, 2.55)], "B", PHASE_B, dy=0.06)
    wire(ax, [(14.65, 4.75), (14.65, 4.15), (5.5, 4.15)], "B: E spikes", PHASE_B,
         at=1, dx=3.3, dy=0.04)
    wire(ax, [(14.65, 1.65), (14.65, 1.0), (5.5, 1.0)], "B: C spikes", PHASE_B, at=1,
         dx=3.3, dy=0.04)
    wire(ax, [(14.65, 6.95), (14.65, 7.3), (9.3, 7.3), (9.3, 6.95)],
         "B: x_E to the memories' copies", PHASE_B, at=1, dy=0.04, dashed=True, lw=1.0)
    wire(ax, [(15.6, 4.75), (15.6, 3.7), (9.3, 3.7), (9.3, 3.45)], "x_E bumped", PHASE_B,
         at=1, dx=-2.0, dy=0.0, dashed=True, lw=1.0)
    wire(ax, [(13.6, 1.65), (13.6, 1.45), (9.3, 1.45), (9.3, 2.0)], "x_C", PHASE_B,
         at=1, dx=-0.9, dy=-0.02, dashed=True, lw=1.0)

    # ------------------------------------------------------------------ legend
    ax.text(10.4, 8.6, "phase A: the previous step's spikes, one queue after\n"
            "the other (A1 input, A2 E, A4 C) into the synapse memories",
            color=PHASE_A, fontsize=8.2, va="center")
    ax.text(10.4, 7.85, "phase B: LIF E/I, LIF C, trace decay and encoder in\n"
            "parallel; the step ends with the slowest",
            color=PHASE_B, fontsize=8.2, va="center")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    return path


if __name__ == "__main__":
    print(draw(sys.argv[1] if len(sys.argv) > 1 else OUT))
