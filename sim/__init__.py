# SPDX-License-Identifier: BSD-3-Clause
"""Cycle-accurate performance simulator: one model per accelerator block (``blocks``), one
exact cycle model per streaming RTL unit (``units``), the system composition (``system``),
power (``power``), resources (``resources``), presets, design-space sweep, plots and the
``ternedge simulate`` command (``cli``).

Every number it produces is *modeled*. Calibration constants and their sources:
``sim/constants.py``.
"""

__all__ = ["blocks", "cli", "constants", "plots", "power", "presets", "resources", "sweep",
           "system", "units"]
