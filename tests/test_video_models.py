"""Every registered video model: shapes, order sensitivity, captioning decode, rebuild from a bundle."""
from __future__ import annotations

import pytest
import torch

from pipelines.registry import get_model, list_models
from pipelines.video import models  # noqa: F401 - registers the models
from pipelines.video.metrics import caption_scores
from pipelines import bundle

CLASSIFIERS = ["video-cnn-lstm", "video-convlstm", "video-frame"]
SMALL_CNN = {"channels": [4, 8], "grid": 2, "grid_channels": 2, "feature_size": 16}


def test_all_video_models_registered():
    assert set(list_models("video-")) == set(CLASSIFIERS) | {"video-caption", "video-predict-convlstm"}


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("size", [(16, 16), (24, 32)])
def test_classifier_shapes(name, size):
    torch.manual_seed(0)
    kw = {"frame_cnn": SMALL_CNN} if name != "video-convlstm" else {"stem_channels": 4, "hidden_channels": 6}
    m = get_model(name, num_classes=6, **kw).eval()
    x = torch.randn(3, 5, 3, *size)
    out = m(x)
    assert out.shape == (3, 6) and torch.isfinite(out).all()
    # batched == item-wise
    assert torch.allclose(m(x[1:2]), out[1:2], atol=1e-5)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_order_sensitivity(name):
    """The single-frame baseline cannot see order; the recurrent models can."""
    torch.manual_seed(0)
    kw = {"frame_cnn": SMALL_CNN} if name != "video-convlstm" else {"stem_channels": 4, "hidden_channels": 6}
    m = get_model(name, num_classes=6, **kw).eval()
    x = torch.randn(2, 6, 3, 16, 16)
    same = torch.allclose(m(x), m(x.flip(1)), atol=1e-5)
    assert same == (name == "video-frame")


def _captioner(V=9):
    torch.manual_seed(0)
    return get_model("video-caption", vocab_size=V, frame_cnn=SMALL_CNN, hidden_size=16, embed_size=8).eval()


def test_caption_model_shapes_and_bow_head():
    m = _captioner()
    x, tgt = torch.randn(2, 5, 3, 16, 16), torch.randint(0, 9, (2, 7))
    logp = m(x, tgt)
    assert logp.shape == (2, 7, 9)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(2, 7), atol=1e-4)
    logp2, bow, frame_bow = m(x, tgt, with_bow=True)
    assert torch.equal(logp, logp2) and bow.shape == (2, 9) and frame_bow.shape == (2, 5, 9)


def test_greedy_equals_beam_of_width_one():
    m = _captioner()
    x = torch.randn(4, 5, 3, 16, 16)
    greedy = m.generate(x, bos=1, eos=2, max_len=8, beam_size=1)
    beam1 = [m.seq2seq.beam_search(m.features(x[i:i + 1]), None, 1, 2, 8, beam_size=1)[0] for i in range(4)]
    assert greedy == beam1
    assert all(len(s) <= 8 and 2 not in s for s in greedy)  # EOS ends a sentence, never part of it
    beam5 = m.generate(x, bos=1, eos=2, max_len=8, beam_size=5)
    assert len(beam5) == 4


def _classifier_bundle(path, config):
    """A classifier bundle written through the real save path (bundle.complete + bundle.save)."""
    torch.manual_seed(1)
    model = get_model("video-cnn-lstm", **config)
    meta = bundle.make_meta("video-classify", "video-cnn-lstm", config, front_end={"num_frames": 3},
                            labels=[f"c{i}" for i in range(config["num_classes"])])
    bundle.save(bundle.complete(meta, model.state_dict()), path)
    return model


def test_rebuild_from_bundle(tmp_path):
    config = {"num_classes": 4, "frame_cnn": SMALL_CNN, "hidden_size": 8}
    a = _classifier_bundle(tmp_path / "cls.pt", config).eval()
    b, meta = bundle.load(tmp_path / "cls.pt", "video-classify")
    assert meta["model_config"] == config and not b.training
    x = torch.randn(1, 3, 3, 16, 16)
    assert torch.equal(a(x), b(x))


def test_caption_scores():
    refs = {0: ["a red circle moves left"], 1: ["a blue square grows", "a blue box grows"]}
    perfect = caption_scores({0: "A red circle moves left.", 1: "a blue box grows"}, refs, meteor=False)
    assert perfect["exact_match"] == 1.0 and perfect["bleu4"] > 0.99 and perfect["n"] == 2
    wrong = caption_scores({0: "a red circle moves right", 1: "a green square grows"}, refs, meteor=False)
    assert wrong["exact_match"] == 0.0 and wrong["bleu4"] < 0.7 and wrong["cider"] < perfect["cider"]


def test_init_frame_cnn_from_classifier_checkpoint(tmp_path):
    from pipelines.video.train import init_frame_cnn

    cls = _classifier_bundle(tmp_path / "cls.pt", {"num_classes": 6, "frame_cnn": SMALL_CNN, "hidden_size": 8})
    cap = _captioner()
    assert not torch.equal(cap.cnn.head[0].weight, cls.backbone.frame_encoder.head[0].weight)
    assert init_frame_cnn(cap, tmp_path / "cls.pt") > 0
    for (k, a), b in zip(cap.cnn.state_dict().items(), cls.backbone.frame_encoder.state_dict().values()):
        assert torch.equal(a, b), k
    other = get_model("video-caption", vocab_size=9, frame_cnn={**SMALL_CNN, "feature_size": 12})
    with pytest.raises(ValueError):
        init_frame_cnn(other, tmp_path / "cls.pt")


def test_motion_features_double_the_encoder_input():
    m = _captioner()
    x = torch.randn(2, 5, 3, 16, 16)
    f = m.features(x)
    assert f.shape == (2, 5, 32)
    assert torch.allclose(f[:, 1:, 16:], f[:, 1:, :16] - f[:, :-1, :16], atol=1e-6) and (f[:, 0, 16:] == 0).all()
