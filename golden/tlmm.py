# SPDX-License-Identifier: BSD-3-Clause
"""Table-lookup ternary matrix multiply (TLMM), as TeLLMe computes it.

Activations are split into groups of G along K (zero-padded to a multiple of G). For each group
the table of all 3**G signed sums ``sum_j w_j * a_j`` (w in {-1, 0, +1}) is built online; each
weight group is stored as one index into that table, and the product is a sum of lookups.

Table order (``patterns(G)``), matching TeLLMe's ``generate_table_simd`` for G=3:
index 0 is the zero pattern; indices 1..P are the P = (3**G - 1) / 2 *canonical* non-zero
patterns; index P + i is the negation of index i. Canonical patterns are ordered by number of
non-zeros, then by the positions of the non-zeros (lexicographic), then by their signs; among a
pattern and its negation the canonical one has fewer minus signs (on a tie, a leading plus), and
signs are ordered by minus count, then with plus before minus, left to right. For G=3 that gives
0; a, b, c; a+b, a-b, a+c, a-c, b+c, b-c; a+b+c, a+b-c, a-b+c, -a+b+c; then the 13 negations.
Only the P canonical sums are computed; the mirror half is their negation (the symmetry that
lets TeLLMe build 13 sums for 27 entries).

Index width: ``index_bits(G)`` = ceil(log2(3**G)): 4, 5, 7 bits for G = 2, 3, 4.
"""

from functools import cache
from itertools import combinations, product

import numpy as np

__all__ = ["patterns", "index_bits", "table_size", "encode_weights", "decode_weights",
           "build_tables", "tlmm", "int_matmul", "pad_k"]


@cache
def patterns(group_size: int) -> np.ndarray:
    """All 3**G weight patterns in table order, shape (3**G, G), int8."""
    if group_size < 1 or group_size > 6:
        raise ValueError(f"group_size must be 1..6, got {group_size}")
    canonical = []
    for count in range(1, group_size + 1):
        for positions in combinations(range(group_size), count):
            signs = [s for s in product((1, -1), repeat=count) if _is_canonical(s)]
            signs.sort(key=lambda s: (s.count(-1), [x == -1 for x in s]))
            for s in signs:
                row = [0] * group_size
                for pos, sign in zip(positions, s, strict=True):
                    row[pos] = sign
                canonical.append(row)
    table = [[0] * group_size] + canonical + [[-x for x in row] for row in canonical]
    return np.array(table, dtype=np.int8)


def _is_canonical(signs) -> bool:
    minus = signs.count(-1)
    plus = len(signs) - minus
    return minus < plus or (minus == plus and signs[0] == 1)


def table_size(group_size: int) -> int:
    return 3 ** group_size


def index_bits(group_size: int) -> int:
    return (table_size(group_size) - 1).bit_length()


@cache
def _pattern_lookup(group_size: int) -> np.ndarray:
    """Map base-3 digits of a pattern (w+1 per position, first position most significant) to
    its table index."""
    lookup = np.zeros(table_size(group_size), dtype=np.uint8)
    for index, row in enumerate(patterns(group_size)):
        code = 0
        for w in row:
            code = code * 3 + int(w) + 1
        lookup[code] = index
    return lookup


def pad_k(k: int, group_size: int) -> int:
    """K rounded up to a multiple of G."""
    return -(-k // group_size) * group_size


def encode_weights(ternary, group_size: int = 3) -> np.ndarray:
    """Ternary weights (N, K) -> table indices (N, ceil(K/G)), uint8. K is zero-padded."""
    w = np.asarray(ternary)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (N, K), got shape {w.shape}")
    if not np.isin(w, (-1, 0, 1)).all():
        raise ValueError("weights must be ternary (-1, 0, +1)")
    n, k = w.shape
    padded = np.zeros((n, pad_k(k, group_size)), dtype=np.int64)
    padded[:, :k] = w
    digits = padded.reshape(n, -1, group_size) + 1
    codes = np.zeros(digits.shape[:2], dtype=np.int64)
    for j in range(group_size):
        codes = codes * 3 + digits[..., j]
    return _pattern_lookup(group_size)[codes]


def decode_weights(indices, k: int, group_size: int = 3) -> np.ndarray:
    """Inverse of ``encode_weights``: indices (N, groups) -> ternary (N, K), int8."""
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] * group_size < k:
        raise ValueError(f"indices of shape {idx.shape} cannot hold K={k} with G={group_size}")
    if idx.size and int(idx.max()) >= table_size(group_size):
        raise ValueError(f"index {int(idx.max())} is outside the "
                         f"{table_size(group_size)}-entry table")
    w = patterns(group_size)[idx].reshape(idx.shape[0], -1)
    return w[:, :k].astype(np.int8)


def build_tables(activations, group_size: int = 3) -> np.ndarray:
    """Online tables: int8 activations (M, K) -> (M, ceil(K/G), 3**G) int32 signed sums.

    The canonical half is computed (``P`` sums per group); the mirror half is its negation.
    """
    a = np.asarray(activations, dtype=np.int64)
    m, k = a.shape
    padded = np.zeros((m, pad_k(k, group_size)), dtype=np.int64)
    padded[:, :k] = a
    groups = padded.reshape(m, -1, group_size)
    half = (table_size(group_size) - 1) // 2
    canonical = patterns(group_size)[1:half + 1].astype(np.int64)     # (P, G)
    sums = groups @ canonical.T                                       # (M, groups, P)
    zero = np.zeros(sums.shape[:2] + (1,), dtype=np.int64)
    return np.concatenate([zero, sums, -sums], axis=-1).astype(np.int32)


def tlmm(activations, indices, group_size: int = 3) -> np.ndarray:
    """TLMM: ``acc[m, n] = sum_g table[m, g, indices[n, g]]``, int64 (M, N).

    ``activations`` is int8 (M, K); ``indices`` is (N, ceil(K/G)) from ``encode_weights``.
    Equal to ``int_matmul(activations, decode_weights(indices, K))``.
    """
    tables = build_tables(activations, group_size).astype(np.int64)
    idx = np.asarray(indices, dtype=np.intp)
    if idx.ndim != 2 or idx.shape[1] != tables.shape[1]:
        raise ValueError(f"indices of shape {idx.shape} do not match {tables.shape[1]} "
                         f"activation groups")
    groups = np.arange(idx.shape[1])
    out = np.empty((tables.shape[0], idx.shape[0]), dtype=np.int64)
    for row, table in enumerate(tables):
        out[row] = table[groups, idx].sum(axis=1)
    return out


def int_matmul(activations, ternary) -> np.ndarray:
    """The plain integer matmul TLMM must equal: ``a @ W.T`` in int64."""
    return np.asarray(activations, dtype=np.int64) @ np.asarray(ternary, dtype=np.int64).T
