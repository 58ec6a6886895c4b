# SPDX-License-Identifier: BSD-3-Clause
"""Power and energy model: static power plus energy per operation. *Modeled*.

``E = P_STATIC_W * t + E_DDR_J_PER_BYTE * ddr_bytes + E_TERNARY_MAC_J * macs
+ E_FP16_OP_J * fp_ops + P_ARM_ACTIVE_W * arm_seconds``

``P_STATIC_W`` is the one fitted constant: with the per-operation energies (engineering
estimates, ``sim/constants.py``) it makes the ``tellme-v2`` configuration average about
4.8 W in decode, matching the paper's "under 5 W" ([P]) and the 4.8 W a third-party script
reports ([3P]). The same constants apply to every configuration.
"""

from . import constants as c

__all__ = ["energy", "components"]


def components(result) -> dict:
    """Energy of a ``system.ForwardResult`` by component, joules."""
    return {
        "static": c.P_STATIC_W * result.seconds,
        "ddr": c.E_DDR_J_PER_BYTE * result.total_ddr_bytes,
        "tlmm": c.E_TERNARY_MAC_J * result.macs,
        "fp16": c.E_FP16_OP_J * result.fp_ops,
        "arm": c.P_ARM_ACTIVE_W * result.arm_seconds,
    }


def energy(result, config=None) -> float:
    """Total energy of a forward pass, joules (``config`` is accepted for future
    configuration-dependent terms such as clock scaling; unused)."""
    return sum(components(result).values())
