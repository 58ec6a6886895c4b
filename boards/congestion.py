# SPDX-License-Identifier: BSD-3-Clause
"""Where nextpnr's router2 is stuck: a summary of its congestion heat maps.

With ``--router2-heatmap PREFIX`` router2 writes, after each iteration N, CSV files
``PREFIX_congestion_by_net_N.csv`` (one row per net: its name, then how many of its wires are
overused) and ``PREFIX_congestion_by_wiretype_N.csv`` (per wire type, how many wires carry 0,
1, 2, ... nets); its log has one line per iteration,
``iter=N wires=... overused=... overuse=...``. ``summarize`` reads the last iteration written
and attributes the overuse to the design's units by net name (the top's submodule, the name's
first two dotted parts: ``accelerator.attention.…`` is ``accelerator.attention``), so a build
that stalls can say which units crowd the routing."""

import csv
import re
from collections import Counter
from pathlib import Path

__all__ = ["HEATMAP_PREFIX", "summarize", "describe", "plot", "remove_heatmaps"]

#: the heat maps' file prefix in a seed's directory (``--router2-heatmap``)
HEATMAP_PREFIX = "router2_heatmap"

_ITERATION = re.compile(r"iter=(\d+)\s+wires=(\d+)\s+overused=(\d+)\s+overuse=(\d+)")
_NET_FILE = re.compile(re.escape(HEATMAP_PREFIX) + r"_congestion_by_net_(\d+)\.csv$")


def _unit(net: str) -> str:
    parts = net.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else parts[0]


def summarize(directory, log: str, *, top: int = 5) -> dict | None:
    """The last router2 iteration in ``log`` and, from the heat map of the last iteration
    written in ``directory``, the overuse by unit (``top`` largest shares) and by wire type
    (the three most overused). None if router2 reported no iteration."""
    iterations = _ITERATION.findall(log)
    if not iterations:
        return None
    iteration, wires, overused, overuse = map(int, iterations[-1])
    out = {"iteration": iteration, "wires": wires, "overused_wires": overused,
           "overuse": overuse, "heatmap_iteration": None, "by_unit": [], "by_wire_type": []}
    maps = sorted((int(match.group(1)), path) for path in Path(directory).iterdir()
                  if (match := _NET_FILE.search(path.name)))
    if not maps:
        return out
    n, path = maps[-1]
    by_unit = Counter()
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[1].strip().isdigit():
                by_unit[_unit(row[0])] += int(row[1])
    total = sum(by_unit.values())
    out["heatmap_iteration"] = n
    out["by_unit"] = [{"unit": unit, "overuse": count, "share": round(count / total, 3)}
                      for unit, count in by_unit.most_common(top)] if total else []
    wire_types = path.with_name(path.name.replace("_by_net_", "_by_wiretype_"))
    if wire_types.exists():
        over = []
        with wire_types.open(newline="") as f:
            for row in list(csv.reader(f))[1:]:
                counts = [int(v) for v in row[1:] if v.strip()]
                # wires carrying k >= 2 nets are overused by k - 1
                over.append(((sum((k - 1) * c for k, c in enumerate(counts) if k >= 2)),
                             row[0].removeprefix("WIRE_TYPE_")))
        out["by_wire_type"] = [{"type": name, "overuse": count}
                               for count, name in sorted(over, reverse=True)[:3] if count]
    return out


def describe(summary: dict | None) -> str:
    """One clause for an error line: ``router2 at iteration 16: 17,576 overused wires; most
    in accelerator.attention (20 %), ...``; empty without a summary."""
    if summary is None:
        return ""
    text = (f"router2 at iteration {summary['iteration']}: "
            f"{summary['overused_wires']:,} overused wires")
    if summary["by_unit"]:
        text += "; most in " + ", ".join(f"{u['unit']} ({100 * u['share']:.0f} %)"
                                         for u in summary["by_unit"])
    return text


def plot(directory, summary: dict, path) -> Path | None:
    """The overuse by tile of the heat map ``summary`` was taken from
    (``PREFIX_congestion_by_coordinate_N.csv``: a row per tile column X, a value per row Y),
    drawn as the die seen from above, into the PNG ``path``; None without that map."""
    n = summary and summary["heatmap_iteration"]
    source = Path(directory) / f"{HEATMAP_PREFIX}_congestion_by_coordinate_{n}.csv"
    if n is None or not source.exists():
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    with source.open(newline="") as f:
        grid = np.array([[int(v) for v in row if v.strip()] for row in csv.reader(f) if row])
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(grid.T, cmap="inferno", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="overused wires in the tile")
    ax.set(xlabel="X (tile column)", ylabel="Y (tile row)",
           title=f"router2 congestion, iteration {n}: {summary['overused_wires']:,} "
                 "overused wires")
    fig.tight_layout()
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=100)
    plt.close(fig)
    partial.replace(path)
    return path


def remove_heatmaps(directory):
    """Delete the heat maps (a few MB per iteration) once summarized."""
    for path in Path(directory).glob(f"{HEATMAP_PREFIX}_*.csv"):
        path.unlink(missing_ok=True)
