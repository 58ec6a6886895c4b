# SPDX-License-Identifier: BSD-3-Clause
"""Logic levels of a mapped netlist: the longest register-to-register path, counted in cells.

``longest_path`` reads a flattened, technology-mapped Yosys netlist (``write_json``) and
returns the path between two registers that passes through the most combinational cells, with
its start and end named by their nets. This is the KV260 build's timing evidence (there is no
Vivado here to give a post-route delay): at UltraScale+ speeds each level of logic costs a
LUT plus a route, roughly 0.3-0.6 ns, so a 250 MHz (4 ns) design wants about ten levels or
fewer between registers.

Why a pass of its own instead of Yosys ``ltp -noff``: ``-noff`` only knows Yosys' internal
flip-flop cells, not FDRE and its kin, and ``ltp`` treats every cell as all inputs to all
outputs, so it would run through a LUTRAM's write port or a registered DSP and never name the
registers at the two ends.

What is counted, per cell (``XILINX_CELLS``; UltraScale+ primitives as ``synth_xilinx``
emits them):

- one level: ``LUT1``-``LUT6``, ``INV``, ``MUXF7``-``MUXF9``, each ``CARRY8``/``CARRY4``
  (a bit's sum and carry from its own and lower inputs and the carry in: a ripple through
  a chain of ``CARRY8`` counts each of them, as Vivado's logic-level count does);
- registers (a path ends at their data, enable and reset pins and starts at their outputs):
  ``FD*E`` flip-flops, ``LD*E`` latches, ``RAMB36E2``/``RAMB18E2`` and ``URAM288`` (reads are
  synchronous: the output comes from the RAM's output latch or its ``DOA_REG`` register);
- one level with its own state: LUTRAM (``RAM32M``, ``RAM64M``, ``RAM32M16``, ``RAM64M8``,
  ``RAM*X1S``, ``RAM*X1D``) and SRLs (``SRL16E``, ``SRLC32E``): the asynchronous read is a
  path from the read address to the data out, counted as one level like the LUT it is; its
  write data, write enable and write address end a path; a read path also starts at the
  RAM's storage (one level: the read mux);
- ``DSP48E2`` by its register parameters: a port whose register (``AREG``, ``BREG``,
  ``CREG``, ``DREG``/``ADREG``, ``INMODEREG``, ``OPMODEREG``, ``ALUMODEREG``,
  ``CARRYINREG``, ``CARRYINSELREG``, with ``MREG`` on the multiplier's inputs) or ``PREG``
  lies between it and ``P`` ends a path there; with ``PREG=1``, ``P`` starts one; with
  ``PREG=0`` the DSP is one level, from its unregistered ports (or from an internal register
  ``MREG``/``AREG``... when those are set) to ``P``;
- buffers (``IBUF``, ``OBUF``, ``BUFG``, ...), ``STARTUPE3`` and the top's ports start and
  end nothing:
  paths from or to the pins are not register-to-register and are not counted.

A cell type outside the table is counted as one level from all its inputs to all its outputs
and listed in the result's ``assumed``, so an unknown primitive shows instead of hiding.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["XILINX_CELLS", "CellModel", "longest_path", "longest_path_file"]


@dataclass(frozen=True)
class CellModel:
    """How one cell type passes paths.

    ``arcs(ports, params)`` gives, per output port, the input ports it depends on
    combinationally (None: the cell's kind decides, see ``kind``). ``kind``: ``"comb"``
    (every output depends on every input), ``"register"`` (outputs start paths, inputs end
    them), ``"stateful"`` (``arcs`` from read inputs, plus one internal start; the ``sinks``
    end paths), ``"buffer"`` (I/O or clock buffer: neither starts nor ends a counted path;
    passes through with no level).
    """

    kind: str
    levels: int = 1
    #: ports that are never data: clock pins
    clocks: tuple = ()
    #: (ports, params) -> {output port: [input port or (input port, bit slice), ...]}
    arcs: object = None
    #: (ports, params) -> input ports that end a path (default for "stateful": all inputs
    #: that no arc uses)
    sinks: object = None
    per_bit: bool = field(default=False)


def _param(params, name, default=0):
    value = params.get(name, default)
    if isinstance(value, int):
        return value
    text = str(value)
    if text and set(text) <= {"0", "1"}:
        return int(text, 2)
    try:
        return int(text)
    except ValueError:
        return default


_LUT = CellModel("comb")
_REGISTER_CLOCKS = ("C", "G", "CLK", "CLKARDCLK", "CLKBWRCLK", "WCLK")


def _lutram_arcs(pairs):
    def arcs(ports, params):
        return {out: [addr] for addr, out in pairs if addr in ports and out in ports}
    return arcs


def _lutram_sinks(write_ports):
    def sinks(ports, params):
        return [p for p in ports if p in write_ports or p.startswith("DI")]
    return sinks


def _multi_port(letters):
    """RAM32M/RAM64M-style: ADDRx -> DOx; the last letter's address is the write address."""
    pairs = [(f"ADDR{c}", f"DO{c}") for c in letters]
    return CellModel("stateful", clocks=("WCLK",), arcs=_lutram_arcs(pairs),
                     sinks=_lutram_sinks({"WE", f"ADDR{letters[-1]}"}))


def _single_port():
    """RAM*X1S: the one address reads and writes."""
    def arcs(ports, params):
        addr = [p for p in ports if p == "A" or (p.startswith("A") and p[1:].isdigit())]
        return {"O": addr}
    return CellModel("stateful", clocks=("WCLK",), arcs=arcs,
                     sinks=lambda ports, params: [p for p in ports if p in ("D", "WE") or
                                                  p == "A" or (p.startswith("A")
                                                               and p[1:].isdigit())])


def _dual_port():
    """RAM*X1D: A reads SPO and writes, DPRA reads DPO."""
    def addr(ports, prefix):
        return [p for p in ports if p == prefix or (p.startswith(prefix)
                                                    and p[len(prefix):].isdigit())]

    def arcs(ports, params):
        return {"SPO": addr(ports, "A"), "DPO": addr(ports, "DPRA")}
    return CellModel("stateful", clocks=("WCLK",), arcs=arcs,
                     sinks=lambda ports, params: ["D", "WE", *addr(ports, "A")])


def _srl():
    def arcs(ports, params):
        return {"Q": [p for p in ports if p == "A" or (p.startswith("A") and p[1:].isdigit())]}
    return CellModel("stateful", clocks=("CLK",), arcs=arcs,
                     sinks=lambda ports, params: ["D", "CE"])


def _carry(width, ci_top):
    """CARRY8/CARRY4: O[i] and CO[i] from S[0..i], DI[0..i] and the carry in."""
    def arcs(ports, params):
        out = {}
        for i in range(width):
            inputs = [("S", slice(0, i + 1)), ("DI", slice(0, i + 1)), "CI"]
            if "CYINIT" in ports:
                inputs.append("CYINIT")
            if ci_top and i >= width // 2 and "CI_TOP" in ports:
                inputs.append("CI_TOP")
            out[("O", i)] = inputs
            out[("CO", i)] = inputs
        return out
    return CellModel("comb", arcs=arcs, per_bit=True)


#: DSP48E2 output ports after the P register, and the inputs that reach P through the ALU
#: only (not the multiplier), each with the parameter of its own register
_DSP_P_OUTPUTS = ("P", "PCOUT", "CARRYOUT", "CARRYCASCOUT", "MULTSIGNOUT", "PATTERNDETECT",
                  "PATTERNBDETECT", "OVERFLOW", "UNDERFLOW", "XOROUT")
_DSP_ALU_INPUTS = {"C": "CREG", "PCIN": None, "CARRYCASCIN": None, "MULTSIGNIN": None,
                   "CARRYIN": "CARRYINREG", "CARRYINSEL": "CARRYINSELREG",
                   "OPMODE": "OPMODEREG", "ALUMODE": "ALUMODEREG"}
_DSP_MULT_INPUTS = {"A": ("AREG",), "ACIN": ("AREG",), "B": ("BREG",), "BCIN": ("BREG",),
                    "D": ("DREG", "ADREG"), "INMODE": ("INMODEREG",)}


def _dsp_arcs(ports, params):
    if _param(params, "PREG", 1):
        return {}
    inputs = [p for p, reg in _DSP_ALU_INPUTS.items()
              if p in ports and (reg is None or not _param(params, reg, 1))]
    if not _param(params, "MREG", 1):
        inputs += [p for p, regs in _DSP_MULT_INPUTS.items()
                   if p in ports and not any(_param(params, r, 1) for r in regs)]
    arcs = {out: list(inputs) for out in _DSP_P_OUTPUTS if out in ports}
    for cascade, source, reg in (("ACOUT", "A", "AREG"), ("BCOUT", "B", "BREG")):
        if cascade in ports and not _param(params, reg, 1):
            arcs[cascade] = [source]
    return arcs


def _dsp_internal(params) -> bool:
    """Does some register inside the DSP feed ``P`` combinationally (``PREG=0``)?"""
    return not _param(params, "PREG", 1) and any(
        _param(params, reg, 1) for reg in ("AREG", "BREG", "CREG", "DREG", "ADREG", "MREG"))


_DSP = CellModel("stateful", clocks=("CLK",), arcs=_dsp_arcs)

_BUFFER = CellModel("buffer", levels=0)

#: the UltraScale+ primitives ``synth_xilinx -family xcup`` maps to
XILINX_CELLS = {
    **{f"LUT{n}": _LUT for n in range(1, 7)},
    "INV": _LUT, "MUXF7": _LUT, "MUXF8": _LUT, "MUXF9": _LUT,
    "CARRY8": _carry(8, True), "CARRY4": _carry(4, False),
    **{name: CellModel("register", levels=0, clocks=_REGISTER_CLOCKS)
       for name in ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1",
                    "LDCE", "LDPE", "RAMB36E2", "RAMB18E2", "URAM288", "FIFO36E2",
                    "FIFO18E2")},
    "RAM32M": _multi_port("ABCD"), "RAM64M": _multi_port("ABCD"),
    "RAM32M16": _multi_port("ABCDEFGH"), "RAM64M8": _multi_port("ABCDEFGH"),
    **{name: _single_port() for name in ("RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM256X1S",
                                         "RAM512X1S")},
    **{name: _dual_port() for name in ("RAM32X1D", "RAM64X1D", "RAM128X1D")},
    "SRL16E": _srl(), "SRLC16E": _srl(), "SRLC32E": _srl(),
    "DSP48E2": _DSP,
    **{name: _BUFFER for name in ("IBUF", "OBUF", "IBUFG", "OBUFT", "IOBUF", "BUFG",
                                  "BUFGCE", "BUFG_PS", "IBUFDS", "OBUFDS")},
    # the configuration's end-of-startup (Amaranth's reset): not a register of the design
    "STARTUPE3": _BUFFER,
}


def _expand(spec, connections):
    """An arc's input (``"S"``, or ``("S", slice)`` for some of its bits) -> its bits."""
    if isinstance(spec, tuple):
        name, where = spec
        return connections.get(name, [])[where]
    return connections.get(spec, [])


def _names(module) -> dict:
    """bit -> the most readable net name holding it (``name[i]`` for a wide net): a public
    name (``hide_name`` 0) over a ``$``-name, then the deepest in the hierarchy (the unit's
    own name over the alias its parent connects), then the shortest."""
    best = {}
    for name, net in module.get("netnames", {}).items():
        hidden = (bool(net.get("hide_name", 0)) or name.startswith("$"), "$" in name)
        bits = net.get("bits", [])
        for i, bit in enumerate(bits):
            if not isinstance(bit, int):
                continue
            label = name if len(bits) == 1 else f"{name}[{i + net.get('offset', 0)}]"
            key = (hidden, -name.count("."), len(label))
            if bit not in best or key < best[bit][0]:
                best[bit] = (key, label)
    return {bit: label for bit, (_, label) in best.items()}


def longest_path(netlist: dict, *, top: str | None = None, cells=None,
                 scope_depth: int = 2) -> dict:
    """The longest register-to-register path of the flattened, mapped ``netlist`` (a Yosys
    ``write_json`` document), in logic levels.

    Parameters
    ----------
    netlist : dict
    top : str or None
        The module to analyse (default: the one with the ``top`` attribute, else the only
        module that is not a blackbox).
    cells : dict or None
        Cell type -> ``CellModel`` (default ``XILINX_CELLS``).
    scope_depth : int
        ``by_scope`` groups the endpoints by the first ``scope_depth`` parts of their
        register's scope (2: ``accelerator.attention``); 0: no ``by_scope``.

    Returns
    -------
    dict
        ``logic_levels`` (int; 0 when registers feed registers directly, None when the design
        has no register-to-register path), ``source`` and ``sink`` (``"net (TYPE pin)"``: the
        starting register's output net, the ending register's input pin and the net it
        drives), ``cells`` (the path's cell types with their counts), ``path`` (each level's
        cell type and output net), ``through`` (the scopes of the path's named nets in order,
        each ``[scope, levels]``: which units it crosses), ``by_scope`` (per scope of the
        ending register, longest first: its longest path's ``logic_levels``, ``source``,
        ``sink`` and ``cells``: each unit's own worst inside a whole design), ``assumed``
        (cell types not in ``cells``, counted as one level all-inputs-to-all-outputs) and
        ``registers`` (the endpoint bits examined).
    """
    cells = XILINX_CELLS if cells is None else cells
    modules = netlist.get("modules", {})
    if top is None:
        tops = [n for n, m in modules.items() if _param(m.get("attributes", {}), "top")]
        if not tops:
            tops = [n for n, m in modules.items()
                    if not _param(m.get("attributes", {}), "blackbox") and m.get("cells")]
        if len(tops) != 1:
            raise ValueError(f"cannot tell the top module of the netlist (candidates: "
                             f"{sorted(tops)}); pass top=")
        top = tops[0]
    if top not in modules:
        raise ValueError(f"the netlist has no module {top!r}")
    module = modules[top]
    submodules = {n for n, m in modules.items()
                  if not _param(m.get("attributes", {}), "blackbox") and n != top}

    # per driven bit: (cell name, cell type, pin, input bits it depends on, levels the cell
    # adds, whether the cell's own state starts a path here)
    drivers = {}
    sinks = []            # (cell name, type, pin, bit)
    assumed = set()
    for cell_name, cell in module.get("cells", {}).items():
        cell_type = cell["type"]
        if cell_type == "$scopeinfo":         # hierarchy names kept by flatten, no logic
            continue
        if cell_type in submodules:
            raise ValueError(f"the netlist is not flattened: {cell_name} is an instance of "
                             f"{cell_type}; synthesize with -flatten")
        model = cells.get(cell_type)
        if model is None:
            if cell_type.startswith("$"):
                raise ValueError(f"the netlist is not technology-mapped: {cell_name} is a "
                                 f"{cell_type}")
            assumed.add(cell_type)
            model = CellModel("comb")
        connections = cell.get("connections", {})
        directions = cell.get("port_directions", {})
        params = cell.get("parameters", {})
        outputs = [p for p, d in directions.items() if d in ("output", "inout")]
        data_inputs = [p for p, d in directions.items()
                       if d == "input" and p not in model.clocks]
        arcs = model.arcs(connections, params) if model.arcs is not None else None
        registered = model.kind == "register"
        internal = model.kind == "stateful" and (cell_type != "DSP48E2"
                                                 or _dsp_internal(params))
        for pin in outputs:
            for i, bit in enumerate(connections.get(pin, [])):
                if not isinstance(bit, int):
                    continue
                if registered or (model.kind == "stateful" and cell_type == "DSP48E2"
                                  and pin not in arcs):
                    # a register's output (a DSP's: after PREG, or a cascade after AREG)
                    drivers[bit] = (cell_name, cell_type, pin, (), 0, True)
                    continue
                if arcs is None:
                    specs = data_inputs
                else:
                    specs = arcs.get((pin, i) if model.per_bit else pin, ())
                deps = tuple(b for spec in specs for b in _expand(spec, connections)
                             if isinstance(b, int))
                drivers[bit] = (cell_name, cell_type, pin, deps, model.levels, internal)
        if registered:
            ends = data_inputs
        elif model.kind == "stateful":
            if model.sinks is not None:
                ends = model.sinks(connections, params)
            else:
                used = {spec if isinstance(spec, str) else spec[0]
                        for specs in (arcs or {}).values() for spec in specs}
                ends = [p for p in data_inputs if p not in used]
        else:
            ends = ()
        sinks += [(cell_name, cell_type, pin, bit) for pin in ends
                  for bit in connections.get(pin, []) if isinstance(bit, int)]

    # level of every driven bit: None (no register behind it: pins, constants), else the most
    # levels from a register; an iterative depth-first walk (carry chains run deep)
    level, via, open_bits = {}, {}, set()

    def loop(bit):
        cell_name, cell_type, pin = drivers[bit][:3]
        return ValueError(f"combinational loop through {cell_name} ({cell_type} {pin})")

    def resolve(root):
        stack = [(root, False)]
        while stack:
            bit, expanded = stack.pop()
            if bit in level:
                continue
            driver = drivers.get(bit)
            if driver is None:
                level[bit] = None
                continue
            deps = driver[3]
            if not expanded:
                if bit in open_bits:
                    raise loop(bit)
                open_bits.add(bit)
                stack.append((bit, True))
                for dep in deps:
                    if dep not in level:
                        if dep in open_bits:
                            raise loop(dep)
                        stack.append((dep, False))
                continue
            open_bits.discard(bit)
            best, best_dep = (0 if driver[5] else None), None
            for dep in deps:
                if level[dep] is not None and (best is None or level[dep] > best
                                               or (best_dep is None and level[dep] == best)):
                    best, best_dep = level[dep], dep
            level[bit] = None if best is None else best + driver[4]
            via[bit] = best_dep

    names = _names(module)

    def label(bit):
        return names.get(bit, f"<bit {bit}>")

    end_names = {}

    def end_name(sink):
        # a flip-flop is named by the net it drives (its register); a RAM or DSP by its cell
        if sink[0] not in end_names:
            cell = module["cells"][sink[0]]
            outputs = [b for p, d in cell.get("port_directions", {}).items() if d == "output"
                       for b in cell["connections"].get(p, []) if isinstance(b, int)]
            end_names[sink[0]] = label(outputs[0]) if len(outputs) == 1 else sink[0]
        return end_names[sink[0]]

    best_by_scope = {}        # the sink register's scope -> (levels, sink)
    result_level, end = None, None
    for sink in sinks:
        resolve(sink[3])
        found = level[sink[3]]
        if found is None:
            continue
        if result_level is None or found > result_level:
            result_level, end = found, sink
        if scope_depth:
            scope = ".".join(_scope(end_name(sink)).split(".")[:scope_depth])
            if scope not in best_by_scope or found > best_by_scope[scope][0]:
                best_by_scope[scope] = (found, sink)
    result = {"logic_levels": result_level, "source": None, "sink": None, "cells": {},
              "path": [], "through": [], "by_scope": [], "assumed": sorted(assumed),
              "registers": len(sinks)}
    if end is None:
        return result

    def describe(sink):
        chain = [sink[3]]
        while via.get(chain[-1]) is not None:
            chain.append(via[chain[-1]])
        chain.reverse()
        path = [{"cell": drivers[bit][1], "net": label(bit)} for bit in chain
                if drivers[bit][4]]
        counts = {}
        for step in path:
            counts[step["cell"]] = counts.get(step["cell"], 0) + 1
        through = []          # the design's scopes along the path, by its levels on named nets
        for step in path:
            if step["net"].startswith(("$", "<")):
                continue
            scope = _scope(step["net"])
            if through and through[-1][0] == scope:
                through[-1][1] += 1
            else:
                through.append([scope, 1])
        start = drivers[chain[0]]
        start_name = label(chain[0]) if start[4] == 0 else f"{start[0]} (its own state)"
        return {"source": f"{start_name} ({start[1]} {start[2]})",
                "sink": f"{end_name(sink)} ({sink[1]} {sink[2]}, from {label(sink[3])})",
                "cells": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                "path": path, "through": through}

    result.update(describe(end))
    for scope, (found, sink) in sorted(best_by_scope.items(), key=lambda kv: -kv[1][0]):
        other = describe(sink)
        result["by_scope"].append({"scope": scope, "logic_levels": found,
                                   "source": other["source"], "sink": other["sink"],
                                   "cells": other["cells"]})
    return result


def _scope(net: str) -> str:
    """The design scope of a net: its name less the last part, or less a port's fields
    (Amaranth names a stream port's payload ``i__payload`` and its fields ``i__payload.a``)."""
    parts = net.split("[")[0].split(".")
    port = next((i for i, part in enumerate(parts) if "__" in part), len(parts) - 1)
    return ".".join(parts[:port]) or "(top)"


def longest_path_file(path, **kwargs) -> dict:
    """``longest_path`` of a ``write_json`` file."""
    with Path(path).open() as f:
        return longest_path(json.load(f), **kwargs)
