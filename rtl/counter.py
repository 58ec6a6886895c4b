# SPDX-License-Identifier: BSD-3-Clause
"""A wide counter without a wide carry chain: ``Counter``.

A 64-bit counter incremented as one adder is a 64-bit carry chain between its own registers
(16 ``CARRY4`` levels on the KV260). ``Counter`` splits it into chunks of ``chunk`` bits. The
lowest chunk adds the increment (``inc_width`` bits) and keeps a registered flag, its bits
above the increment's all ones, so its carry out is that flag and a sum of ``inc_width``
bits; every chunk above counts the carry into it and keeps a registered ``full`` flag (all
ones), and a chunk counts when the chunk below carries and every chunk between is full. Each
cycle's logic is one chunk's adder and an AND of flags, and the value is the exact count
every cycle.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Counter"]


class Counter(wiring.Component):
    """A ``width``-bit counter, ``chunk`` bits a carry chain.

    Attributes
    ----------
    inc : In(inc_width)
        Added this cycle.
    clear : In(1)
        Back to 0 (over ``inc``).
    value : Out(width)
        The count (wraps at ``2**width``).
    """

    def __init__(self, width: int, *, inc_width: int = 1, chunk: int = 16):
        for name, value in (("width", width), ("inc_width", inc_width), ("chunk", chunk)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not inc_width < chunk <= width:
            raise ValueError(f"need inc_width < chunk <= width, got {inc_width}, {chunk}, "
                             f"{width}")
        self.width, self.inc_width, self.chunk = width, inc_width, chunk
        super().__init__({"inc": In(inc_width), "clear": In(1), "value": Out(width)})

    def elaborate(self, platform):
        m = Module()
        b = self.inc_width
        bounds = [(lo, min(lo + self.chunk, self.width))
                  for lo in range(0, self.width, self.chunk)]
        parts = [Signal(hi - lo, name=f"part{i}") for i, (lo, hi) in enumerate(bounds)]
        m.d.comb += self.value.eq(Cat(*parts))

        low = parts[0]
        high_ones = Signal()                     # low's bits from ``inc_width`` up all ones
        total = Signal(len(low) + 1)
        m.d.comb += total.eq(low + self.inc)
        with m.If(self.clear):
            m.d.sync += [low.eq(0), high_ones.eq(len(low) == b)]
        with m.Elif(self.inc != 0):
            m.d.sync += [low.eq(total), high_ones.eq(total[b:len(low)].all())]
        carry = high_ones & ((low[:b] + self.inc) >> b)[0]
        for i, part in enumerate(parts[1:], start=1):
            full = Signal(name=f"full{i}")         # the part all ones
            with m.If(self.clear):
                m.d.sync += [part.eq(0), full.eq(0)]
            with m.Elif(carry):
                m.d.sync += [part.eq(part + 1), full.eq(part == (1 << len(part)) - 2)]
            carry = carry & full
        return m
