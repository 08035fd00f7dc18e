"""Model and streaming: streamed == whole-clip logits, detection logic, registry/checkpoint round trip."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.kws.data import make_labels
from pipelines import bundle
from pipelines.kws.model import KWSLSTM
from pipelines.kws.stream import (DetectConfig, StreamingDetector, TorchEngine, detect, score_detections, stream_logits,
                                  stream_posteriors)
from pipelines.registry import get_model


def model(seed=0, **kw):
    torch.manual_seed(seed)
    m = get_model("kws-lstm", n_classes=5, hidden_size=24, num_layers=2, **kw).eval()
    m.set_normalisation(torch.randn(40) * 10, torch.rand(40) * 5 + 1)
    return m


def wave(seed=0, n=16000):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) * 0.1


@pytest.mark.parametrize("block,cmn", [(160, 0), (1234, 0), (8000, 0), (160, 100), (1234, 30), (8000, 100)])
def test_streamed_equals_whole_clip_logits(block, cmn):
    m, w = model(cmn_frames=cmn), wave()
    with torch.no_grad():
        whole, _ = m.frame_logits(m.stack_frames(m.encode(w[None])))
        clip = m(w[None])
    streamed = stream_logits(m, w, block)
    assert streamed.shape == whole[0].shape == (97 // 3, 5)
    torch.testing.assert_close(streamed, whole[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(streamed[-1], clip[0], atol=1e-4, rtol=1e-4)


def test_unstacked_model_streams_frame_by_frame():
    m = model(stack=1)
    w = wave(5, 8000)
    with torch.no_grad():
        whole, _ = m.frame_logits(m.encode(w[None]))
    streamed = stream_logits(m, w, 160)  # one 10 ms frame per call
    assert streamed.shape == (47, 5)
    torch.testing.assert_close(streamed, whole[0], atol=1e-4, rtol=1e-4)


def test_reference_backend_streams_identically():
    m = model(backend="reference")
    w = wave(1, 6000)
    with torch.no_grad():
        whole, _ = m.frame_logits(m.stack_frames(m.encode(w[None])))
    torch.testing.assert_close(stream_logits(m, w, 999), whole[0], atol=1e-4, rtol=1e-4)


def test_bidirectional_pools_and_refuses_to_stream():
    m = model(bidirectional=True)
    assert m(wave()[None].repeat(3, 1)).shape == (3, 5)
    with pytest.raises(ValueError):
        StreamingDetector(m, make_labels(["a", "b", "c"]))


def test_one_detection_while_the_score_stays_high():
    labels = make_labels(["yes", "no", "up"])
    m = model()
    with torch.no_grad():  # a rigged head: always "no" (index 3) with p ~ 0.99
        m.head.weight.zero_()
        m.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 7.0, 0.0]))
    res = detect(m, labels, np.zeros(5 * 16000, np.float32), DetectConfig(block_ms=70, average_ms=210,
                                                                          threshold=0.9, suppression_ms=1500))
    assert [(w, s > 0.9) for _, w, s in res["detections"]] == [("no", True)] and res["rtf"] > 0
    # the first step ends at 30 ms + window edge: detection at the first step, (3*1-1)*10 ms + 32 ms
    assert abs(res["detections"][0][0] - 0.052) < 1e-6
    with torch.no_grad():  # silence/unknown never fire, however confident
        m.head.bias.copy_(torch.tensor([9.0, 0.0, 0.0, 0.0, 0.0]))
    assert detect(m, labels, np.zeros(3 * 16000, np.float32))["detections"] == []


class Scripted(StreamingDetector):
    """The detection logic fed a scripted posterior sequence instead of a model's."""

    def __init__(self, script, *a, **k):
        super().__init__(*a, **k)
        self.script = list(script)

    def step_posteriors(self, samples):
        out, self.script = self.script[:3], self.script[3:]
        return torch.stack(out).softmax(-1).numpy() if out else np.zeros((0, len(self.labels)))


def test_threshold_suppression_and_rearming():
    labels = make_labels(["yes", "no"])
    hi_no, hi_yes, low = (torch.tensor(v).log() for v in ([.02, .02, .02, .94], [.02, .02, .94, .02], [.9, .04, .03, .03]))
    # steps are 30 ms: "no" 0.6 s, dip 0.15 s, "no" 0.6 s (inside suppression), quiet 1.5 s, "yes" 0.3 s
    script = [hi_no] * 20 + [low] * 5 + [hi_no] * 20 + [low] * 50 + [hi_yes] * 10 + [low] * 10
    det = Scripted(script, model(), labels, DetectConfig(average_ms=30, threshold=0.8, suppression_ms=1500))
    found = []
    for _ in range(len(script) // 3 + 1):
        found += det.push(torch.zeros(1))
    assert [w for _, w, _ in found] == ["no", "yes"]
    assert abs(found[1][0] - found[0][0] - 95 * 0.03) < 1e-6


def test_block_size_does_not_change_detections():
    labels = make_labels(["yes", "no", "up"])
    m = model(3)
    with torch.no_grad():
        m.head.bias.add_(torch.tensor([0.0, 0.0, 2.0, 0.0, 0.0]))
    w = (wave(4, 48000) * torch.linspace(0, 3, 48000)).numpy()
    a = detect(m, labels, w, DetectConfig(block_ms=10, threshold=0.3))["detections"]
    for block in (20, 330, 500):
        b = detect(m, labels, w, DetectConfig(block_ms=block, threshold=0.3))["detections"]
        assert len(a) > 0 and [x[:2] for x in a] == [x[:2] for x in b]
        assert np.allclose([x[2] for x in a], [x[2] for x in b], atol=2e-4)


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "pipelines" / "models" / "kws.pt").is_file(),
                    reason="shipped kws model not built (make models)")
def test_10ms_and_500ms_blocks_give_the_same_detections_of_real_speech(kws_stream_recording):
    from encoders.io.audio import load_audio

    m, b = bundle.load("kws", "kws")
    w = load_audio(kws_stream_recording, sr=16000)
    ten = detect(m, b["labels"], w, DetectConfig(block_ms=10))
    five = detect(m, b["labels"], w, DetectConfig(block_ms=500))
    assert len(ten["detections"]) >= 3
    assert [x[:2] for x in ten["detections"]] == [x[:2] for x in five["detections"]]
    assert np.allclose([x[2] for x in ten["detections"]], [x[2] for x in five["detections"]], atol=2e-4)
    # the streamed posteriors themselves agree whatever the block
    np.testing.assert_allclose(stream_posteriors(TorchEngine(m), w, 160), stream_posteriors(TorchEngine(m), w, 8000),
                               atol=1e-5)


def test_running_mean_normalisation_is_causal_and_removes_a_constant_channel():
    """cmn_frames: the features minus their exponential running mean; a constant offset (a fixed EQ in the
    log-mel domain) fades from the features, and no frame depends on later ones."""
    from pipelines.kws.model import ema

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 400, 6, generator=g)
    offset = torch.randn(1, 1, 6, generator=g) * 5
    a, b = x - ema(x, 50), (x + offset) - ema(x + offset, 50)
    left = (a - b).abs().amax(dim=(0, 2))  # what is left of the offset at each frame: |offset| a^(t+1)
    assert left[0] > 0.9 * offset.abs().max() * np.exp(-1 / 50)
    assert left[-1] < 1.01 * offset.abs().max() * np.exp(-400 / 50) + 1e-5
    y = x.clone()
    y[:, 200:] += 3.0  # a change later on leaves every earlier frame as it was
    torch.testing.assert_close(ema(y, 50)[:, :200], ema(x, 50)[:, :200])
    m = model(cmn_frames=40)
    f = m.encode(wave(2)[None])
    assert f.shape == (1, 97, 40) and m.cmn_frames == 40


def test_score_detections():
    truth = [{"word": "yes", "time_s": 2.0, "keyword": True}, {"word": "no", "time_s": 5.0, "keyword": True},
             {"word": "cat", "time_s": 8.0, "keyword": False}]
    dets = [(2.4, "yes", 0.9), (5.3, "up", 0.8), (8.4, "no", 0.7), (2.9, "yes", 0.8)]
    s = score_detections(dets, truth)
    assert (s["keywords"], s["hits"], s["misses"], s["false_alarms"]) == (2, 1, 1, 3)


def test_bundle_round_trip_keeps_weights_and_normalisation(tmp_path):
    m = model()
    kwargs = {"n_classes": 5, "hidden_size": 24, "num_layers": 2}
    meta = bundle.make_meta("kws", "kws-lstm", kwargs, front_end=m.feature_config.to_dict(),
                            labels=make_labels(["a", "b", "c"]), extras={"detect_config": DetectConfig().to_dict()})
    bundle.save(bundle.for_shipping(bundle.complete(meta, m.state_dict())), tmp_path / "m.pt")
    m2, b = bundle.load(tmp_path / "m.pt", "kws")
    assert isinstance(m2, KWSLSTM) and not m2.training and b["labels"][0] == "_silence_"
    w = wave(2)[None]
    torch.testing.assert_close(m2(w), m(w), atol=2e-2, rtol=2e-2)  # fp16 storage
    # the normalisation statistics travel as buffers of the state_dict
    torch.testing.assert_close(m2.feat_mean, m.feat_mean, atol=1e-2, rtol=1e-3)


@pytest.mark.parametrize("cmn", [0, 50])
def test_torch_step_path_equals_the_cpu_fast_path(cmn):
    """The step path used on a GPU (torch.lstm_cell) and the CPU one (NumPy products) give the same logits."""
    m, w = model(7, cmn_frames=cmn), wave(3, 12000)
    fast = TorchEngine(m)
    slow = TorchEngine(m)
    slow.fast = None  # what a CUDA model runs
    a = torch.cat([fast.push(w[s: s + 700]) for s in range(0, len(w), 700)])
    b = torch.cat([slow.push(w[s: s + 700]) for s in range(0, len(w), 700)])
    assert a.shape == b.shape == ((12000 - 352) // 480, 5)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
