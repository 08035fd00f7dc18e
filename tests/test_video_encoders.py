"""Video front end: sampling, normalisation, configs, frame CNN, frozen-feature cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.video import (FrameCNN, FrameCNNConfig, VideoFrontEndConfig, cached_features, encode_frames,
                            frames_to_tensor, sample_frames, sample_indices, uint8_to_input)


def test_uniform_sampling_takes_segment_centres():
    assert sample_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_indices(8, 8).tolist() == list(range(8))
    idx = sample_indices(40, 8)
    assert idx.tolist() == [2, 7, 12, 17, 22, 27, 32, 37]  # evenly spread, first/last not over-weighted
    assert (np.diff(idx) == 5).all()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 13, 100])
def test_uniform_sampling_short_and_long(n):
    idx = sample_indices(n, 8)
    assert len(idx) == 8 and (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() <= n - 1
    assert len(set(idx.tolist())) == min(n, 8)  # every frame used when there are fewer than T


def test_stride_sampling():
    assert sample_indices(20, 4, "stride", 3).tolist() == [5, 8, 11, 14]  # centred window of 10 frames
    assert sample_indices(5, 4, "stride", 2).tolist() == [0, 2, 4, 4]  # short clip repeats its last frame
    with pytest.raises(ValueError):
        sample_indices(0, 4)


def test_configs_round_trip():
    fe = VideoFrontEndConfig(num_frames=12, size=(48, 40), sampling="stride", stride=3)
    assert VideoFrontEndConfig.from_dict(fe.to_dict()) == fe
    assert fe.key() == VideoFrontEndConfig.from_dict(fe.to_dict()).key() != VideoFrontEndConfig().key()
    cnn = FrameCNNConfig(channels=(8, 16), grid=2, feature_size=32, coords=False)
    assert FrameCNNConfig.from_dict(cnn.to_dict()) == cnn
    with pytest.raises(ValueError):
        VideoFrontEndConfig(sampling="random")


def test_normalisation_and_layout():
    cfg = VideoFrontEndConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    f = np.zeros((2, 4, 6, 3), np.uint8)
    f[..., 0] = 255  # red channel full
    x = frames_to_tensor(f, cfg)
    assert x.shape == (2, 3, 4, 6)
    assert torch.allclose(x[:, 0], torch.full((2, 4, 6), 2.0)) and torch.allclose(x[:, 1], torch.full((2, 4, 6), -2.0))
    batched = uint8_to_input(torch.from_numpy(np.stack([f, f])), cfg)
    assert batched.shape == (2, 2, 3, 4, 6) and torch.equal(batched[1], x)


def test_sample_frames_resizes():
    frames = np.random.default_rng(0).integers(0, 255, (10, 60, 80, 3), dtype=np.uint8)
    out = sample_frames(frames, VideoFrontEndConfig(num_frames=5, size=(20, 24)))
    assert out.shape == (5, 20, 24, 3)


def test_frame_cnn_shapes_and_position_sensitivity():
    torch.manual_seed(0)
    cnn = FrameCNN(FrameCNNConfig(feature_size=40)).eval()
    x = torch.zeros(3, 3, 32, 32)
    assert cnn(x).shape == (3, 40)
    a, b = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    a[..., 4:10, 4:10] = 1
    b[..., 4:10, 22:28] = 1  # same blob, other place: the features must differ (no global pooling)
    assert not torch.allclose(cnn(a), cnn(b), atol=1e-4)


def test_frozen_feature_cache(tmp_path):
    torch.manual_seed(0)
    cnn = FrameCNN(FrameCNNConfig(channels=(4, 8), grid=2, feature_size=16))
    clips = torch.randn(5, 3, 3, 16, 16)
    f1, hit = cached_features(cnn, clips, tmp_path / "f.pt", key="k1", batch_size=2)
    assert f1.shape == (5, 3, 16) and (tmp_path / "f.pt").is_file() and not hit
    assert torch.allclose(f1, encode_frames(cnn, clips))
    with torch.no_grad():
        for p in cnn.parameters():
            p.add_(1.0)
    f2, hit = cached_features(cnn, clips, tmp_path / "f.pt", key="k1")
    assert hit and torch.equal(f2, f1)  # read from disk
    f3, hit = cached_features(cnn, clips, tmp_path / "f.pt", key="k2")
    assert not hit and not torch.allclose(f3, f1)  # new key: recomputed


def test_frame_cnn_without_the_global_mean():
    old = FrameCNN(FrameCNNConfig.from_dict({"channels": [4, 8]}))  # an old config: max and mean
    # without the global mean only the max of each channel goes to the head
    nomean = FrameCNN(FrameCNNConfig.from_dict({"channels": [4, 8], "pool_mean": False}))
    assert nomean.head[0].in_features == old.head[0].in_features - 8
    assert nomean(torch.rand(3, 3, 16, 16)).shape == (3, old.feature_size)
