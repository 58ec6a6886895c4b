# SPDX-License-Identifier: BSD-3-Clause
"""The RTL backend: the accelerator top (``rtl.accelerator``) simulated by Verilator.

The top is elaborated for the model's dimensions and built once (cached by its Verilog) under
``~/.cache/ternedge/rtl`` (``TERNEDGE_CACHE`` overrides). The simulator runs
``host.cosim_server`` as a cocotb test in a child process: DDR is an AXI RAM model, the
registers are driven over AXI-Lite. Per forward pass the backend writes the token embeddings
and the program into DDR, starts the accelerator, waits for DONE (with a cycle timeout), reads
the final norm's rows back and runs the LM head on the host, like every other backend.

``cycle_log`` records the accelerator's cycle counter (and performance counters) of every
forward pass.
"""

import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Client
from pathlib import Path

import numpy as np

from ..golden.config import AcceleratorConfig
from ..golden.model import GoldenModel
from ..golden.weights import ModelWeights
from ..rtl import isa
from .accelerator import Layout
from .backends import Backend
from .errors import InputError

__all__ = ["RTL_CONFIG", "MAX_TOKENS", "MAX_CONTEXT", "check_request", "RTLBackend",
           "ForwardCycles", "AcceleratorError"]

#: geometry of the simulated top: 4 columns per cycle (one 128-bit beat of Q16 results),
#: 24 tables per K-step (a 120-bit weight entry per 128-bit beat)
RTL_CONFIG = AcceleratorConfig(group_size=3, tables_per_step=24, cols_per_cycle=4)
TOPLEVEL = "ternedge_accelerator"
#: the simulated top's default sizes: longest prompt (one prefill pass) and KV-cache length
MAX_TOKENS = 32
MAX_CONTEXT = 128


def check_request(prompt_tokens: int, max_new_tokens: int, *, max_tokens: int = MAX_TOKENS,
                  max_context: int = MAX_CONTEXT) -> None:
    """Reject a generation the simulated top cannot hold, before it is built."""
    if prompt_tokens > max_tokens:
        raise InputError(f"the prompt is {prompt_tokens} tokens but the RTL backend prefills at "
                         f"most {max_tokens}; shorten the prompt")
    if prompt_tokens + max_new_tokens > max_context:
        raise InputError(f"{prompt_tokens} prompt tokens + {max_new_tokens} new tokens exceed "
                         f"the RTL backend's KV cache of {max_context}; lower --max-new-tokens "
                         f"to at most {max_context - prompt_tokens}")


class AcceleratorError(RuntimeError):
    """The simulated accelerator reported an error or did not finish."""


@dataclass
class ForwardCycles:
    """One forward pass on the accelerator: its tokens, position and measured cycles."""
    tokens: int
    position: int
    cycles: int
    counters: dict = field(default_factory=dict)


def cache_root() -> Path:
    return Path(os.environ.get("TERNEDGE_CACHE", Path.home() / ".cache" / "ternedge")) / "rtl"


class RTLBackend(Backend):
    """Generation on the Verilator-simulated accelerator.

    Parameters
    ----------
    weights : the model.
    config : TLMM geometry of the top (``RTL_CONFIG``).
    max_tokens : longest prefill block (a longer prompt is an error).
    max_context : KV-cache length of the DDR layout and the attention unit.
    max_job_n : widest N of one engine job (``rtl.accelerator.Accelerator``); None: no tiling.
    attention_tile : queries per attention job.
    timeout_cycles : give up on a forward pass after this many cycles.
    """

    name = "rtl"

    def __init__(self, weights: ModelWeights, *, config: AcceleratorConfig = RTL_CONFIG,
                 max_tokens: int = MAX_TOKENS, max_context: int = MAX_CONTEXT,
                 max_job_n: int | None = None, attention_tile: int = 4,
                 timeout_cycles: int = 50_000_000,
                 build_dir=None, verbose: bool = False):
        super().__init__(weights)
        self.golden = GoldenModel(weights, config)
        self.accel_config = config
        self.max_tokens, self.max_context = max_tokens, max_context
        self.max_job_n, self.attention_tile = max_job_n, attention_tile
        self.timeout_cycles = timeout_cycles
        self.layout = Layout(self.golden, config, max_tokens=max_tokens,
                             max_context=max_context, max_job_n=max_job_n,
                             attention_tile=attention_tile)
        self.cycle_log: list[ForwardCycles] = []
        self.position = 0
        self._build_dir = Path(build_dir) if build_dir else None
        self._verbose = verbose
        self._conn = None
        self._thread = None
        self._start()

    # ---- simulator process ----
    def _start(self):
        from ..rtl import cosim
        from ..rtl.accelerator import Accelerator

        top = Accelerator(config=self.accel_config, model=self.config,
                          max_tokens=self.max_tokens, max_context=self.max_context,
                          max_job_n=self.max_job_n, attention_tile=self.attention_tile)
        build_dir = self._build_dir or cache_root() / self._design_key()
        quiet = not self._verbose
        if quiet:
            print(f"[rtl] Verilator build of the accelerator (cached; a first build takes a few "
                  f"minutes), log: {build_dir}.log", file=sys.stderr, flush=True)
        runner = cosim.build(top, toplevel=TOPLEVEL, sim="verilator", build_dir=build_dir,
                             log_file=f"{build_dir}.log" if quiet else None)
        self._tmp = tempfile.TemporaryDirectory(prefix="ternedge-rtl-")
        self._sim_log = f"{build_dir}-simulation.log"      # kept after the run for a post-mortem
        address = os.path.join(self._tmp.name, "socket")
        key = secrets.token_bytes(16)
        env = {"TERNEDGE_COSIM_ADDRESS": address, "TERNEDGE_COSIM_KEY": key.hex(),
               "COCOTB_LOG_LEVEL": "INFO" if self._verbose else "WARNING"}
        def simulate():
            try:
                with cosim.environment("verilator"):
                    runner.test(hdl_toplevel=TOPLEVEL, test_module="ternedge.host.cosim_server",
                                build_dir=build_dir, test_dir=self._tmp.name, extra_env=env,
                                log_file=self._sim_log if quiet else None)
            except BaseException:                   # SystemExit from a failed cocotb run
                pass                                # the host notices the thread has ended

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 120
        while self._conn is None:
            try:
                self._conn = Client(address, authkey=key)
            except (FileNotFoundError, ConnectionRefusedError):
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise AcceleratorError(
                        f"the Verilator simulation did not start (see {self._sim_log}); "
                        f"rebuild by deleting {build_dir}") from None
                time.sleep(0.05)
        self._request(("load", self.layout.size, self.layout.blocks()))

    def _design_key(self):
        cfg, c = self.config, self.accel_config
        return (f"G{c.group_size}T{c.tables_per_step}N{c.cols_per_cycle}-h{cfg.hidden_size}"
                f"-i{cfg.intermediate_size}-a{cfg.num_attention_heads}"
                f"-kv{cfg.num_key_value_heads}-m{self.max_tokens}-c{self.max_context}"
                f"-n{self.max_job_n or 0}-q{self.attention_tile}")

    def _request(self, message):
        self._conn.send(message)
        while not self._conn.poll(1.0):
            if not self._thread.is_alive():
                raise AcceleratorError("the Verilator simulation exited unexpectedly (see "
                                       f"{self._sim_log})")
        reply = self._conn.recv()
        if reply[0] == "error":
            raise AcceleratorError(reply[1])
        return reply

    def close(self):
        if self._conn is not None:
            try:
                self._request(("exit",))
            except (AcceleratorError, OSError, EOFError):
                pass
            self._conn.close()
            self._conn = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def script(self, steps) -> list:
        """Register-level steps on the simulated board (``host.cosim_server``: ``("write",
        offset, value)``, ``("read", offset)``, ``("ddr", addr, bytes)``, ``("wait_done",
        cycles)``); the values of the reads and waits."""
        return self._request(("script", list(steps)))[1]

    # ---- backend interface ----
    @property
    def context(self) -> int:
        return self.max_context

    def reset(self) -> None:
        self.position = 0

    def forward(self, token_ids) -> np.ndarray:
        """Run tokens at the next positions; the final norm's Q16 rows (tokens, hidden)."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(-1)
        if not 1 <= ids.size <= self.max_tokens:
            raise InputError(f"the RTL backend runs 1 to {self.max_tokens} tokens per pass, "
                             f"got {ids.size}; shorten the prompt")
        if self.position + ids.size > self.max_context:
            raise InputError(f"{self.position + ids.size} positions exceed the simulated KV "
                             f"cache of {self.max_context}; shorten the prompt or generation")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise InputError(f"token ids must lie in [0, {self.config.vocab_size})")
        layout = self.layout
        program = layout.program(ids.size, self.position)
        rows = self.golden.embed_q16[ids].astype("<i4").tobytes()
        writes = [(layout.buffers["x"], rows),
                  (layout.program_addr, isa.encode(program))]
        reads = [(layout.buffers["out"], ids.size * self.config.hidden_size * 4)]
        _, status, cycles, counters, data = self._request(
            ("run", writes, layout.program_addr, len(program), reads, self.timeout_cycles))
        if status & 0b100:
            raise AcceleratorError(f"the accelerator stopped with error code "
                                   f"{(status >> 8) & 0xFF} (STATUS={status:#x})")
        self.cycle_log.append(ForwardCycles(ids.size, self.position, cycles, counters))
        self.position += ids.size
        hidden = np.frombuffer(data[0], dtype="<i4").astype(np.int64)
        return hidden.reshape(ids.size, self.config.hidden_size)

    def prefill(self, token_ids) -> np.ndarray:
        return self.golden.logits(self.forward(token_ids)[-1:])[0]

    def decode(self, token_id: int) -> np.ndarray:
        return self.golden.logits(self.forward([token_id]))[0]
