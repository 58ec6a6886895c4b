# SPDX-License-Identifier: BSD-3-Clause
"""The golden TLMM equals a plain integer matmul; table order and encoding pinned."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ternedge.golden import tlmm


def test_g3_table_order_is_tellme():
    # TeLLMe generate_table_simd: 0; a, b, c; a+b, a-b, a+c, a-c, b+c, b-c;
    # a+b+c, a+b-c, a-b+c, -a+b+c; then the negations of entries 1..13
    expected = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -1, 0), (1, 0, 1),
                (1, 0, -1), (0, 1, 1), (0, 1, -1), (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)]
    table = tlmm.patterns(3)
    assert [tuple(row) for row in table[:14]] == expected
    np.testing.assert_array_equal(table[14:], -table[1:14])
    assert tlmm.index_bits(3) == 5


@pytest.mark.parametrize("group_size, bits", [(2, 4), (3, 5), (4, 7)])
def test_every_pattern_once_with_mirror_symmetry(group_size, bits):
    table = tlmm.patterns(group_size)
    half = (3 ** group_size - 1) // 2
    assert len({tuple(row) for row in table}) == 3 ** group_size
    np.testing.assert_array_equal(table[half + 1:], -table[1:half + 1])
    assert tlmm.index_bits(group_size) == bits


def test_tables_hold_13_distinct_sums_for_g3():
    a = np.array([[5, 17, 40]])
    table = tlmm.build_tables(a, 3)[0, 0]
    assert len(set(table[1:14].tolist())) == 13
    np.testing.assert_array_equal(table, tlmm.patterns(3).astype(int) @ a[0])


@st.composite
def tlmm_problem(draw):
    group_size = draw(st.sampled_from([2, 3, 4]))
    m = draw(st.integers(1, 5))
    k = draw(st.integers(1, 40))
    n = draw(st.integers(1, 12))
    acts = draw(hnp.arrays(np.int8, (m, k), elements=st.integers(-128, 127)))
    weights = draw(hnp.arrays(np.int8, (n, k), elements=st.integers(-1, 1)))
    return group_size, acts, weights


@settings(max_examples=200, deadline=None)
@given(tlmm_problem())
def test_tlmm_equals_integer_matmul(problem):
    group_size, acts, weights = problem
    indices = tlmm.encode_weights(weights, group_size)
    assert indices.shape == (weights.shape[0], -(-weights.shape[1] // group_size))
    np.testing.assert_array_equal(tlmm.decode_weights(indices, weights.shape[1], group_size),
                                  weights)
    np.testing.assert_array_equal(tlmm.tlmm(acts, indices, group_size),
                                  tlmm.int_matmul(acts, weights))


def test_tlmm_at_model_shape():
    rng = np.random.default_rng(0)
    acts = rng.integers(-127, 128, (3, 1536))
    weights = rng.integers(-1, 2, (200, 1536))
    np.testing.assert_array_equal(tlmm.tlmm(acts, tlmm.encode_weights(weights)),
                                  tlmm.int_matmul(acts, weights))


def test_encode_rejects_non_ternary():
    with pytest.raises(ValueError, match="ternary"):
        tlmm.encode_weights(np.array([[0, 2, 1]]))


def test_decode_rejects_out_of_table_index():
    with pytest.raises(ValueError, match="outside"):
        tlmm.decode_weights(np.array([[27]], dtype=np.uint8), 3, 3)
