# SPDX-License-Identifier: BSD-3-Clause
"""The RTL backend: the accelerator top (``rtl.accelerator``) on the Verilator C++ harness.

The top is elaborated for the model's dimensions, verilated with the harness
(``rtl.harness``: a C++ DDR model and AXI-Lite master) into a shared library, cached by its
inputs under ``~/.cache/ternedge/rtl`` (``TERNEDGE_CACHE`` overrides). Per forward pass the
backend writes the token embeddings and the program into the harness's DDR, programs the
registers, runs the clock in C++ until DONE (or a cycle limit), reads the final norm's rows
back and runs the LM head on the host, like every other backend. A pass holds at most
``max_tokens`` tokens (one LINEAR block); a longer prompt is prefilled in chunks, each at the
position where the previous one ended, up to the KV cache's ``max_context``.

``cycle_log`` records every pass: its tokens, position, the top's CYCLES register and
performance counters, the harness cycles it took (register accesses included) and its wall
time.
"""

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..golden import ddr as ddr_profiles
from ..golden import isa
from ..golden.config import AcceleratorConfig
from ..golden.layout import Layout
from ..golden.model import GoldenModel
from ..golden.weights import ModelWeights
from ..rtl.regs import ErrorCode, Reg
from .backends import Backend
from .errors import InputError, TernedgeError

__all__ = ["RTL_CONFIG", "MAX_TOKENS", "MAX_CONTEXT", "CLOCK_MHZ", "check_request",
           "RTLBackend", "ForwardCycles", "AcceleratorError", "cache_root"]

#: geometry of the simulated top: 4 columns per cycle (one 128-bit beat of Q16 results),
#: 24 tables per K-step (a 120-bit weight entry per 128-bit beat)
RTL_CONFIG = AcceleratorConfig(group_size=3, tables_per_step=24, cols_per_cycle=4)
TOPLEVEL = "ternedge_accelerator"
#: the simulated top's default sizes: tokens per pass (a prefill chunk) and KV-cache length
MAX_TOKENS = 32
MAX_CONTEXT = 128
#: fabric clock at which DDR profiles given in seconds turn into cycles
CLOCK_MHZ = 250.0

#: what each fault code means to a user, and what to do about it
FAULTS = {
    ErrorCode.ADDRESS_RANGE: "an instruction addressed DDR outside the window",
    ErrorCode.AXI_READ: "a DDR read was answered with an error response (SLVERR/DECERR)",
    ErrorCode.AXI_WRITE: "a DDR write was answered with an error response (SLVERR/DECERR)",
    ErrorCode.BAD_OPCODE: "the program holds an unknown opcode or a gate this top lacks",
    ErrorCode.BAD_LENGTH: "an instruction's lengths do not fit this top",
    ErrorCode.BAD_ADDRESS: "the program lies outside the DDR window",
    ErrorCode.START_WHILE_BUSY: "START came while a program was running",
}


def check_request(prompt_tokens: int, max_new_tokens: int, *,
                  max_context: int = MAX_CONTEXT) -> None:
    """Reject a generation the simulated top's KV cache cannot hold, before it is built."""
    if prompt_tokens > max_context:
        raise InputError(f"the prompt is {prompt_tokens} tokens but the RTL backend's KV cache "
                         f"holds {max_context}; shorten the prompt")
    if prompt_tokens + max_new_tokens > max_context:
        raise InputError(f"{prompt_tokens} prompt tokens + {max_new_tokens} new tokens exceed "
                         f"the RTL backend's KV cache of {max_context}; lower --max-new-tokens "
                         f"to at most {max_context - prompt_tokens}")


class AcceleratorError(TernedgeError):
    """The simulated accelerator reported an error or did not finish."""


@dataclass
class ForwardCycles:
    """One pass on the accelerator: its tokens, position and measured cycles."""
    tokens: int
    position: int
    cycles: int                      # the top's CYCLES register (FETCH to FINISH)
    kind: str = "forward"            # prefill (a chunk of the prompt), decode or verify
    counters: dict = field(default_factory=dict)
    sim_cycles: int = 0              # harness clock cycles of the pass, host accesses included
    wall_s: float = 0.0
    cpu_s: float = 0.0               # this process's CPU time for the pass (the harness is
                                     # single-threaded: the speed on one core, whatever the load)


def cache_root() -> Path:
    return Path(os.environ.get("TERNEDGE_CACHE", Path.home() / ".cache" / "ternedge")) / "rtl"


def _ddr_timing(ddr, clock_mhz):
    if isinstance(ddr, ddr_profiles.DdrTiming):
        return ddr
    try:
        return ddr_profiles.profile(ddr).timing(clock_mhz)
    except ValueError as exc:
        raise InputError(str(exc)) from None


class RTLBackend(Backend):
    """Generation on the accelerator top simulated by Verilator.

    Parameters
    ----------
    weights : the model.
    config : TLMM geometry (and table memory) of the top (``RTL_CONFIG``).
    max_tokens : tokens per pass (prefill chunk).
    max_context : KV-cache length of the DDR layout and the attention unit.
    max_job_n : widest N of one engine job (``rtl.accelerator.Accelerator``); None: no tiling.
    attention_tile : queries per attention job.
    ddr : a ``golden.ddr`` profile name (``ideal``, ``kv260``) or a ``DdrTiming``.
    clock_mhz : the fabric clock the profile's latencies are counted at.
    timeout_cycles : give up on a pass after this many cycles.
    waves : write an FST waveform of the whole run to this path (a separate build).
    profile_guided : build the library profile-guided (``rtl.harness.build``'s ``train``:
        a short prefill and a decode step of this model on an instrumented build first; about
        1.1x the simulated cycles per second for one more compile). None: yes unless the
        environment sets ``TERNEDGE_HARNESS_PGO=0`` (the test suite does, for build time).
    """

    name = "rtl"

    def __init__(self, weights: ModelWeights, *, config: AcceleratorConfig = RTL_CONFIG,
                 max_tokens: int = MAX_TOKENS, max_context: int = MAX_CONTEXT,
                 max_job_n: int | None = None, attention_tile: int = 4,
                 ddr="ideal", clock_mhz: float = CLOCK_MHZ,
                 timeout_cycles: int = 2_000_000_000, build_dir=None, waves=None,
                 verbose: bool = False, profile_guided: bool | None = None):
        super().__init__(weights)
        self.golden = GoldenModel(weights, config)
        self.accel_config = config
        self.gates = (self.config.hidden_act,)       # the model's MLP gate alone is built
        self.max_tokens, self.max_context = max_tokens, max_context
        self.max_job_n, self.attention_tile = max_job_n, attention_tile
        self.timeout_cycles = timeout_cycles
        self.clock_mhz = clock_mhz
        self.ddr_name = ddr if isinstance(ddr, str) else "custom"
        self.ddr = _ddr_timing(ddr, clock_mhz)
        self.layout = Layout(self.golden, config, max_tokens=max_tokens,
                             max_context=max_context, max_job_n=max_job_n,
                             attention_tile=attention_tile)
        self.cycle_log: list[ForwardCycles] = []
        self.position = 0
        self.harness = None
        if profile_guided is None:
            profile_guided = os.environ.get("TERNEDGE_HARNESS_PGO", "1") != "0"
        self._build(build_dir, waves, verbose, profile_guided and not waves)

    def _build(self, build_dir, waves, verbose, profile_guided):
        from ..rtl import harness
        from ..rtl.accelerator import Accelerator

        # the golden model's config: its RMSNorm epsilon is the range-scaled one (golden.scaling)
        top = Accelerator(config=self.accel_config, model=self.golden.config,
                          max_tokens=self.max_tokens, max_context=self.max_context,
                          max_job_n=self.max_job_n, attention_tile=self.attention_tile,
                          gates=self.gates)
        build_dir = Path(build_dir) if build_dir else cache_root() / self._design_key()
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / "build.log"
        start = time.monotonic()
        try:
            library = harness.build(top, build_dir=build_dir, toplevel=TOPLEVEL,
                                    waves=bool(waves), log_file=log,
                                    on_build=lambda: print(
                                        f"[rtl] Verilator build of the accelerator (cached; a "
                                        f"first build takes minutes), log: {log}",
                                        file=sys.stderr, flush=True),
                                    train=self._train if profile_guided else None)
        except harness.HarnessError as exc:
            raise AcceleratorError(str(exc)) from None
        if verbose:
            print(f"[rtl] harness {library} ready in {time.monotonic() - start:.1f} s",
                  file=sys.stderr)
        self._load(library, fst=waves)

    def _load(self, library, fst=None):
        from ..rtl import harness

        self.harness = harness.Harness(library, self.layout.size, ddr=self.ddr, fst=fst)
        for addr, data in self.layout.blocks():
            self.harness.ddr_write(addr, data)

    #: the profile-guided build's training workload: a prefill of this many tokens (at most
    #: ``max_tokens``) and one decode step
    TRAIN_PREFILL = 4

    def _train(self, library):
        """The training run of a profile-guided build on its instrumented ``library``: every
        instruction kind of a forward pass, prefill and decode; then back to a fresh start."""
        self._load(library)
        try:
            prompt = [i % self.config.vocab_size for i in range(
                1, min(self.TRAIN_PREFILL, self.max_tokens, self.max_context - 1) + 1)]
            self.hidden(prompt, "train")
            self.hidden([prompt[-1]], "train")
        finally:
            self.close()
            self.position, self.cycle_log = 0, []

    def _design_key(self):
        cfg, c = self.config, self.accel_config
        return (f"G{c.group_size}T{c.tables_per_step}N{c.cols_per_cycle}{c.table_memory[0]}"
                f"-h{cfg.hidden_size}-i{cfg.intermediate_size}-a{cfg.num_attention_heads}"
                f"-kv{cfg.num_key_value_heads}-{cfg.hidden_act}-m{self.max_tokens}"
                f"-c{self.max_context}-n{self.max_job_n or 0}-q{self.attention_tile}")

    def set_ddr(self, ddr) -> None:
        """Switch the harness's DDR to a profile name or a ``DdrTiming`` (no rebuild)."""
        self.ddr_name = ddr if isinstance(ddr, str) else "custom"
        self.ddr = _ddr_timing(ddr, self.clock_mhz)
        self.harness.set_ddr(self.ddr)

    def close(self):
        if self.harness is not None:
            self.harness.close()
            self.harness = None

    def script(self, steps) -> list:
        """Register-level steps on the simulated board: ``("write", offset, value)``,
        ``("read", offset)``, ``("ddr", addr, bytes)`` (write DDR), ``("wait_done", cycles)``
        (STATUS once the run is over, or None); the values of the reads and waits."""
        out = []
        for step in steps:
            if step[0] == "write":
                self.harness.reg_write(step[1], step[2])
            elif step[0] == "read":
                out.append(self.harness.reg_read(step[1]))
            elif step[0] == "ddr":
                self.harness.ddr_write(step[1], step[2])
            elif step[0] == "wait_done":
                out.append(self.harness.run_until_done(step[1]))
            else:
                raise ValueError(f"unknown script step {step[0]!r}")
        return out

    # ---- backend interface ----
    @property
    def context(self) -> int:
        return self.max_context

    def reset(self) -> None:
        self.position = 0

    def truncate(self, length: int) -> None:
        # the KV entries past ``length`` stay in DDR and are overwritten by the next pass
        if not 0 <= length <= self.position:
            raise InputError(f"cannot truncate the KV cache to {length} tokens: it holds "
                             f"{self.position}")
        self.position = length

    def _run(self, ids, kind) -> np.ndarray:
        """One pass of at most ``max_tokens`` tokens at ``position``; Q16 rows out."""
        layout, h = self.layout, self.harness
        program = layout.program(ids.size, self.position)
        h.ddr_write(layout.buffers["x"], self.golden.embed_q16[ids].astype("<i4").tobytes())
        h.ddr_write(layout.program_addr, isa.encode(program))
        start, wall, cpu = h.cycle, time.perf_counter(), time.process_time()
        for reg, value in ((Reg.CTRL, 2), (Reg.DDR_BASE, 0), (Reg.DDR_SIZE, layout.size),
                           (Reg.PROGRAM_ADDR, layout.program_addr),
                           (Reg.PROGRAM_LEN, len(program)), (Reg.CTRL, 1)):
            h.reg_write(reg, value)
        status = h.run_until_done(self.timeout_cycles)
        if status is None:
            raise AcceleratorError(f"the accelerator did not signal DONE within "
                                   f"{self.timeout_cycles} cycles; raise timeout_cycles, or "
                                   "check the program")
        if status & 0b100:
            code = (status >> 8) & 0xFF
            try:
                what = FAULTS.get(ErrorCode(code), "")
                name = ErrorCode(code).name
            except ValueError:
                what, name = "", "unknown"
            raise AcceleratorError(f"the accelerator stopped with error {name} (code {code}): "
                                   f"{what}; the KV cache of this pass is incomplete, reset "
                                   "the sequence")
        cycles = h.reg_read(Reg.CYCLES_LO) | h.reg_read(Reg.CYCLES_HI) << 32
        from ..rtl.accelerator import COUNTERS

        counters = {name: h.reg_read(Reg.COUNTER + 4 * i) for i, name in enumerate(COUNTERS)}
        self.cycle_log.append(ForwardCycles(ids.size, self.position, cycles, kind, counters,
                                            h.cycle - start, time.perf_counter() - wall,
                                            time.process_time() - cpu))
        self.position += ids.size
        data = h.ddr_read(layout.buffers["out"], ids.size * self.config.hidden_size * 4)
        return np.frombuffer(data, dtype="<i4").astype(np.int64).reshape(ids.size, -1)

    def hidden(self, token_ids, kind: str = "forward") -> np.ndarray:
        """Run tokens at the next positions, in passes of at most ``max_tokens`` (``kind``
        labels them in ``cycle_log``); the final norm's Q16 rows (tokens, hidden)."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise InputError("no tokens to run")
        if self.position + ids.size > self.max_context:
            raise InputError(f"{self.position + ids.size} positions exceed the simulated KV "
                             f"cache of {self.max_context}; shorten the prompt or generation")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise InputError(f"token ids must lie in [0, {self.config.vocab_size})")
        rows = [self._run(ids[i:i + self.max_tokens], kind) for i in range(0, ids.size,
                                                                     self.max_tokens)]
        return np.concatenate(rows)

    def forward(self, token_ids) -> np.ndarray:
        # the LM head one row at a time, as decode runs it: a multi-row product may round
        # differently in the last bit (GoldenBackend.forward does the same)
        rows = self.hidden(token_ids, "verify")
        return np.stack([self.golden.logits(row[None])[0] for row in rows])

    def prefill(self, token_ids) -> np.ndarray:
        return self.golden.logits(self.hidden(token_ids, "prefill")[-1:])[0]

    def decode(self, token_id: int) -> np.ndarray:
        return self.golden.logits(self.hidden([token_id], "decode"))[0]
