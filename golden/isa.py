# SPDX-License-Identifier: BSD-3-Clause
"""The accelerator's instruction format: what the host writes into DDR and the sequencer runs.

A program is a list of instructions, 16 little-endian 32-bit words (64 bytes, four 128-bit
DDR beats) each. Every instruction streams operands from DDR through one unit and writes the
result back, iterating over ``tokens`` x ``heads`` with 2-D strided addressing; the sequencer
finishes an iteration's writes before it starts the next, so an instruction may read what the
one before it wrote.

======  ===========================================================================
word    field
======  ===========================================================================
0       ``op`` (bits 7:0), ``pointwise`` (bits 9:8, a ``PointwiseOp`` for ``POINTWISE`` and
        the LINEAR epilogue), LINEAR ``epilogue`` (bit 10)
1       ``tokens`` (15:0), ``heads`` (31:16): the iteration counts
2       LINEAR: ``k_steps`` (15:0), ``n_blocks`` (31:16);
        ATTENTION: ``keys0`` (15:0, keys seen by the first token), ``group_shift`` (23:16,
        log2 of query heads per KV head), ``tile`` (31:24, queries per attention job)
3       LINEAR: weight Scale ``w_m`` (15:0), ``w_e`` (23:16, signed);
        ATTENTION: ``v_offset``, bytes from the key cache to the value cache
4-7     source 0: ``addr``, ``stride_t``, ``stride_h`` (bytes), ``beats`` per iteration
8-11    source 1: the same (LINEAR: the weight image, read once, with the epilogue operand's
        ``addr`` and ``stride_t`` in words 9 and 10; ATTENTION: the key cache, ``beats`` per
        key)
12-15   destination: the same
======  ===========================================================================

Per op, for token t and head h (``a + t*stride_t + h*stride_h`` unless said otherwise):

- ``NORM``: RMSNorm of a row with gamma from source 1 (same address every token); the row is
  gathered from ``heads`` segments of source 0 (``stride_h`` apart, ``beats`` each) and
  written as one row.
- ``LINEAR``: the weights once (``k_steps * n_blocks * N`` entries, the weight stream below,
  ``weight_stream_beats`` beats), then per
  token source 0's row quantized, multiplied and dequantized; the token's outputs go to
  ``heads`` destination segments. With the epilogue (one segment only), the outputs stream
  through the Pointwise unit first: ``pointwise(a, y)`` with ``a`` the epilogue operand's row
  (residual add: a is the residual; gating: a is the gate, y the up projection).
- ``ROPE``: source 0's head h rotated by source 1's row (the cos/sin table row of the token's
  position: per beat of the RoPE unit, a cos beat then a sin beat).
- ``ATTENTION``: query head h (source 0) against ``keys0 + t`` keys of KV head
  ``h >> group_shift`` (source 1 at ``addr + (h >> group_shift) * stride_h``, contiguous keys;
  values at ``v_offset`` from the keys). Tokens go in tiles of up to ``tile`` consecutive
  queries, which must then be contiguous (``stride_t = beats * 16``) in source 0 and in the
  destination: one job per tile and head, its output one write.
- ``POINTWISE``: ``pointwise(a, b)`` of source 0's and source 1's rows.

The LINEAR weight stream
------------------------
A LINEAR's weights are ``k_steps * n_blocks * N`` entries, K-step-major then column (the order
the engine consumes them). Entry ``e`` holds the T table indices of one column for one
K-step, ``entry_bits = T * b`` bits (``b = tlmm.index_bits(G)``; table ``t``'s index at entry
bits ``[t*b, (t+1)*b)``, least significant bit first). Entry ``e`` starts at stream bit
``e * entry_pitch(entry_bits)``:

- an entry wider than a beat (the KV260's 28 x 5 = 140 bits) follows the one before it
  directly, so entries straddle beats (140 bits: 1.67 bits per weight, not the 3.05 of an
  entry padded to two beats). The RTL's gearbox then yields at most one entry per beat, which
  the engine's bank takes every cycle: the weight read never waits;
- an entry of at most a beat (the tiny top's 24 x 5 = 120 bits) takes a beat of its own (bits
  ``[0, entry_bits)`` of it): packed tighter, a beat would hold parts of two entries, more than
  the bank takes in a cycle.

The stream is little-endian (stream bit ``i`` is bit ``i % 8`` of byte ``i // 8``) and
zero-padded to whole 128-bit beats. ``pack_weight_stream`` / ``unpack_weight_stream`` are the
host's and the reference semantics' sides of it; ``rtl.weight_stream`` unpacks it at line
rate.

Weight ports. The top reads the stream over P AXI ports at once (``AcceleratorConfig.
fill_entries_per_cycle``: 1, 2 or 4), each beat of every port together making a P-beat row of the
stream. So the stream is zero-padded to a multiple of P beats and lies in DDR as P *parts*:
stream beat ``b`` is beat ``b // P`` of part ``b % P``. Part 0 starts at the LINEAR's source
1 ``addr``, part ``p`` ``p * weight_part_stride(beats, P)`` bytes after it: the parts'
size rounded up to whole 4 KiB pages, so that every part starts at the same offset in a
page and splits into the same bursts (``golden.ddr.bursts``), and the P reads run in
lockstep. Source 1's ``beats`` is the stream's (all parts); each port reads ``beats / P``.
The P entries of a row are the bank's fill of one cycle: one row completes at most P
entries (the row is no wider than P entries), so the read still never waits.
``weight_region`` / ``weight_stream_from_region`` place the stream's parts and gather them
back.
"""

import enum
import struct

import numpy as np

__all__ = ["Op", "WORDS", "BEAT_BYTES", "BEAT_BITS", "LANES", "INSTRUCTION_BYTES", "Source",
           "Instruction", "encode", "decode", "WEIGHT_PART_ALIGN", "WEIGHT_PORTS",
           "entry_pitch",
           "weight_stream_beats", "weight_part_stride", "weight_region_bytes", "weight_region",
           "weight_stream_from_region", "pack_weight_stream", "unpack_weight_stream"]

#: 32-bit words per instruction
WORDS = 16
#: bytes per DDR beat (128-bit AXI data)
BEAT_BYTES = 16
#: bits per DDR beat
BEAT_BITS = 8 * BEAT_BYTES
#: Q16 int32 lanes per DDR beat
LANES = BEAT_BYTES // 4
INSTRUCTION_BYTES = 4 * WORDS
#: bytes a weight stream's parts are apart are a multiple of this (a 4 KiB AXI page)
WEIGHT_PART_ALIGN = 4096
#: weight ports the top may have
WEIGHT_PORTS = (1, 2, 4)


class Op(enum.IntEnum):
    NORM = 1
    LINEAR = 2
    ROPE = 3
    ATTENTION = 4
    POINTWISE = 5


class Source:
    """A strided stream: ``addr``, ``stride_t``, ``stride_h`` in bytes, ``beats`` per iteration."""

    __slots__ = ("addr", "stride_t", "stride_h", "beats")

    def __init__(self, addr=0, stride_t=0, stride_h=0, beats=0):
        self.addr, self.stride_t, self.stride_h, self.beats = addr, stride_t, stride_h, beats

    def words(self):
        return [self.addr, self.stride_t, self.stride_h, self.beats]

    def __eq__(self, other):
        return isinstance(other, Source) and self.words() == other.words()

    def __repr__(self):
        return (f"Source(addr={self.addr:#x}, stride_t={self.stride_t}, "
                f"stride_h={self.stride_h}, beats={self.beats})")


class Instruction:
    """One decoded instruction (see the module docstring for the fields)."""

    def __init__(self, op, *, tokens=1, heads=1, src0=None, src1=None, dst=None, pointwise=0,
                 k_steps=0, n_blocks=0, w_m=0, w_e=0, keys0=0, group_shift=0, v_offset=0,
                 tile=1, epilogue=None):
        self.op = Op(op)
        self.tokens, self.heads, self.pointwise = tokens, heads, pointwise
        self.src0, self.src1, self.dst = src0 or Source(), src1 or Source(), dst or Source()
        self.k_steps, self.n_blocks, self.w_m, self.w_e = k_steps, n_blocks, w_m, w_e
        self.keys0, self.group_shift, self.v_offset = keys0, group_shift, v_offset
        self.tile = tile
        #: LINEAR: Source of the epilogue operand rows (``addr``, ``stride_t``), or None
        self.epilogue = epilogue

    def words(self):
        if self.op is Op.LINEAR:
            w2 = self.k_steps | self.n_blocks << 16
            w3 = self.w_m | (self.w_e & 0xFF) << 16
        elif self.op is Op.ATTENTION:
            w2 = self.keys0 | self.group_shift << 16 | self.tile << 24
            w3 = self.v_offset
        else:
            w2 = w3 = 0
        w0 = int(self.op) | self.pointwise << 8
        src1 = self.src1.words()
        if self.op is Op.LINEAR and self.epilogue is not None:
            w0 |= 1 << 10
            src1[1:3] = [self.epilogue.addr, self.epilogue.stride_t]
        return ([w0, self.tokens | self.heads << 16, w2, w3]
                + self.src0.words() + src1 + self.dst.words())

    def __repr__(self):
        return f"Instruction({self.op.name}, tokens={self.tokens}, heads={self.heads})"


def encode(instructions) -> bytes:
    """The program image of ``instructions``."""
    out = bytearray()
    for ins in instructions:
        words = ins.words()
        for w in words:
            if not 0 <= w < 1 << 32:
                raise ValueError(f"{ins!r}: field value {w} does not fit 32 bits")
        out += struct.pack(f"<{WORDS}I", *words)
    return bytes(out)


def decode(image: bytes) -> list:
    """Instructions from a program image (the inverse of ``encode``)."""
    if len(image) % INSTRUCTION_BYTES:
        raise ValueError(f"a program image is a multiple of {INSTRUCTION_BYTES} bytes, "
                         f"got {len(image)}")
    out = []
    for i in range(0, len(image), INSTRUCTION_BYTES):
        w = struct.unpack_from(f"<{WORDS}I", image, i)
        op = Op(w[0] & 0xFF)
        fields = {}
        src1 = Source(*w[8:12])
        if op is Op.LINEAR:
            e = (w[3] >> 16) & 0xFF
            fields = {"k_steps": w[2] & 0xFFFF, "n_blocks": w[2] >> 16, "w_m": w[3] & 0xFFFF,
                      "w_e": e - 256 if e & 0x80 else e}
            if w[0] >> 10 & 1:
                fields["epilogue"] = Source(w[9], w[10])
                src1 = Source(w[8], 0, 0, w[11])
        elif op is Op.ATTENTION:
            fields = {"keys0": w[2] & 0xFFFF, "group_shift": (w[2] >> 16) & 0xFF,
                      "tile": w[2] >> 24, "v_offset": w[3]}
        out.append(Instruction(op, tokens=w[1] & 0xFFFF, heads=w[1] >> 16,
                               pointwise=(w[0] >> 8) & 3, src0=Source(*w[4:8]),
                               src1=src1, dst=Source(*w[12:16]), **fields))
    return out


def entry_pitch(entry_bits: int) -> int:
    """Stream bits from one weight entry's start to the next's: the entry itself when it is
    wider than a beat (packed back to back), else a whole beat."""
    if entry_bits <= 0:
        raise ValueError(f"entry_bits must be positive, got {entry_bits}")
    return max(entry_bits, BEAT_BITS)


def _check_ports(ports):
    if ports not in WEIGHT_PORTS:
        raise ValueError(f"weight ports must be one of {WEIGHT_PORTS}, got {ports!r}")


def weight_stream_beats(entries: int, entry_bits: int, ports: int = 1) -> int:
    """128-bit beats of a LINEAR's weight stream of ``entries`` entries, read over ``ports``
    ports (padded to a multiple of ``ports``)."""
    _check_ports(ports)
    beats = -(-entries * entry_pitch(entry_bits) // BEAT_BITS)
    return -(-beats // ports) * ports


def weight_part_stride(beats: int, ports: int) -> int:
    """Bytes from one part of a ``beats``-beat weight stream to the next (``ports`` parts):
    a part's bytes rounded up to ``WEIGHT_PART_ALIGN``."""
    _check_ports(ports)
    if beats <= 0 or beats % ports:
        raise ValueError(f"a weight stream over {ports} ports has a positive multiple of "
                         f"{ports} beats, got {beats}")
    return -(-beats // ports * BEAT_BYTES // WEIGHT_PART_ALIGN) * WEIGHT_PART_ALIGN


def weight_region_bytes(beats: int, ports: int) -> int:
    """Bytes from part 0's start to the last part's end."""
    part = beats // ports * BEAT_BYTES
    return part if ports == 1 else (ports - 1) * weight_part_stride(beats, ports) + part


def weight_region(stream: bytes, ports: int) -> bytes:
    """A weight stream laid out as its ``ports`` parts (zeros between them)."""
    beats = len(stream) // BEAT_BYTES
    if len(stream) % BEAT_BYTES:
        raise ValueError(f"a weight stream is whole {BEAT_BYTES}-byte beats, got {len(stream)} "
                         "bytes")
    stride = weight_part_stride(beats, ports)
    rows = np.frombuffer(stream, dtype=np.uint8).reshape(beats // ports, ports, BEAT_BYTES)
    region = np.zeros(weight_region_bytes(beats, ports), dtype=np.uint8)
    for p in range(ports):
        part = rows[:, p].reshape(-1)
        region[p * stride:p * stride + part.size] = part
    return region.tobytes()


def weight_stream_from_region(region, beats: int, ports: int) -> bytes:
    """The ``beats``-beat weight stream whose parts ``region`` holds (``weight_region``'s
    inverse)."""
    expected = weight_region_bytes(beats, ports)
    if len(region) != expected:
        raise ValueError(f"a {beats}-beat weight stream over {ports} ports spans {expected} "
                         f"bytes, got {len(region)}")
    stride, part = weight_part_stride(beats, ports), beats // ports * BEAT_BYTES
    data = np.frombuffer(bytes(region), dtype=np.uint8)
    parts = [data[p * stride:p * stride + part].reshape(-1, BEAT_BYTES) for p in range(ports)]
    return np.stack(parts, axis=1).tobytes()


def pack_weight_stream(indices, index_bits: int, ports: int = 1) -> bytes:
    """The weight stream of ``indices`` (entries, T): table indices below ``2**index_bits``,
    in stream order (K-step-major, then column), padded for ``ports`` weight ports."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 2 or idx.size == 0:
        raise ValueError(f"indices must be a non-empty (entries, T) array, got shape {idx.shape}")
    if idx.min() < 0 or idx.max() >= 1 << index_bits:
        raise ValueError(f"table indices must lie in [0, {1 << index_bits}), got "
                         f"[{idx.min()}, {idx.max()}]")
    entries, tables = idx.shape
    width = tables * index_bits
    pitch = entry_pitch(width)
    bits = ((idx[..., None] >> np.arange(index_bits)) & 1).reshape(entries, width)
    stream = np.zeros((weight_stream_beats(entries, width, ports) * BEAT_BITS,),
                      dtype=np.uint8)
    rows = stream[:entries * pitch].reshape(entries, pitch)
    rows[:, :width] = bits
    return np.packbits(stream, bitorder="little").tobytes()


def unpack_weight_stream(data, entries: int, tables: int, index_bits: int,
                         ports: int = 1) -> np.ndarray:
    """The (entries, tables) table indices of a weight stream (the inverse of
    ``pack_weight_stream``)."""
    width = tables * index_bits
    expected = weight_stream_beats(entries, width, ports) * BEAT_BYTES
    if len(data) != expected:
        raise ValueError(f"a weight stream of {entries} entries of {width} bits is "
                         f"{expected} bytes, got {len(data)}")
    bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8), bitorder="little")
    pitch = entry_pitch(width)
    rows = bits[:entries * pitch].reshape(entries, pitch)[:, :width]
    rows = rows.reshape(entries, tables, index_bits).astype(np.int64)
    return (rows << np.arange(index_bits)).sum(-1)
