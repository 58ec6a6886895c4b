# SPDX-License-Identifier: BSD-3-Clause
"""host.neural_data: the synthetic generator, the NeuroBench .mat reader and its errors."""

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from ternedge.host import neural_data as nd  # noqa: E402
from ternedge.host.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "indy_synthetic.mat"
    return nd.write_mat(path, nd.synthetic_session(seed=3, channels=96, duration_s=60))


def test_synthetic_is_seeded_and_neurobench_shaped(small_file, tmp_path):
    again = nd.write_mat(tmp_path / "again.mat", nd.synthetic_session(seed=3, channels=96,
                                                                      duration_s=60))
    a, b = nd.read_mat(small_file), nd.read_mat(again)
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(a.velocity, b.velocity)
    other = nd.synthetic_session(seed=4, channels=96, duration_s=60)
    assert not np.array_equal(other["cursor_pos"], nd.synthetic_session(3, 96, 60)["cursor_pos"])
    assert a.spikes.shape == (15000, 96) and a.spikes.dtype == np.uint8
    assert set(np.unique(a.spikes)) <= {0, 1}
    assert 0.02 < a.spikes.mean() < 0.12                     # a few % occupancy, like M1
    assert a.velocity.shape == (15000, 2)
    with h5py.File(small_file) as f:
        assert f["t"].shape == (1, 15000)
        assert f["cursor_pos"].shape == (2, 15000) and f["target_pos"].shape == (2, 15000)
        assert f["spikes"].shape == (2, 96)                  # units x channels of references
        np.testing.assert_allclose(a.velocity.T, np.gradient(f["cursor_pos"][()], axis=1))


def test_192_channels_and_validation():
    s = nd.synthetic_session(seed=1, channels=192, duration_s=5)
    assert len(s["spikes"][0]) == 192
    with pytest.raises(InputError, match="96 .* or 192"):
        nd.synthetic_session(seed=1, channels=100)


def test_binning_follows_neurobench(tmp_path):
    """Spike at t in [t0 + (j-2)*bw, t0 + (j-1)*bw) lands in sample j (histogram on the grid
    from t[0] - bin_width, then one bin later); units OR into their channel."""
    k = 20
    t0 = 10.0
    contents = {"t": t0 + 0.004 * np.arange(k),
                "cursor_pos": np.zeros((2, k)), "target_pos": np.zeros((2, k)),
                "spikes": [[np.array([t0 + 0.001, t0 + 0.0021]), np.array([])],
                           [np.array([t0 + 0.0101]), np.array([t0 + 0.030])]]}
    contents["target_pos"][:, 12:] = 5.0
    s = nd.read_mat(nd.write_mat(tmp_path / "tiny.mat", contents))
    expected = np.zeros((k, 2), np.uint8)
    expected[2, 0] = 1                       # both unit-0 spikes in [t0, t0+4ms): sample 2
    expected[4, 0] = 1                       # unit 1 of channel 0 at t0+10.1 ms: sample 4
    expected[9, 1] = 1                       # t0 + 30 ms: sample 9
    np.testing.assert_array_equal(s.spikes, expected)
    np.testing.assert_array_equal(s.segments, [[0, 11], [11, 20]])


def test_split_is_chronological_by_segment(small_file):
    s = nd.read_mat(small_file)
    n = len(s.segments)
    for ratio in (0.5, 0.8):
        sp = s.split(ratio)
        train_len = int(np.floor(ratio * n))
        val_len = (n - train_len) // 2
        assert sp.train == (0, s.segments[train_len, 0])
        assert sp.val == (s.segments[train_len, 0], s.segments[train_len + val_len, 0])
        assert sp.test == (s.segments[train_len + val_len, 0], s.bins)
    with pytest.raises(InputError, match="train ratio"):
        s.split(1.5)


def test_corrupt_truncated_and_foreign_files(small_file, tmp_path):
    with pytest.raises(InputError, match="no such data file"):
        nd.read_mat(tmp_path / "missing.mat")
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(small_file.read_bytes()[:50000])
    with pytest.raises(InputError, match="corrupt or truncated") as info:
        nd.read_mat(truncated)
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(InputError, match="not a readable HDF5"):
        nd.read_mat(garbage)
    foreign = tmp_path / "foreign.mat"
    with h5py.File(foreign, "w") as f:
        f["t"] = np.zeros((1, 5))
    with pytest.raises(InputError, match="missing 'cursor_pos'"):
        nd.read_mat(foreign)
