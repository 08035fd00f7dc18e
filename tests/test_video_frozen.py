"""Frame encoders by name (torchvision classifiers from a local state dict, never downloaded) and
frozen-feature training: the feature cache equals on-the-fly features, is read back on a second run,
and is never reused after a change of encoder, weights or front end."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from encoders.video import (IMAGENET_MEAN, TorchvisionFrameEncoder, VideoFrontEndConfig, build_frame_encoder,
                            uint8_to_input, weights_hash)
from pipelines import bundle
from pipelines.registry import get_model
from pipelines.video.cli import main
from pipelines.video.data import load_clipset
from pipelines.video.synth import synthesize
from pipelines.video.train import frozen_features

TINY = ["--frames", "3", "--epochs", "1", "--threads", "1", "--device", "cpu", "--json"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A randomly initialised resnet18 state dict (head included) saved to a temp file."""
    import torchvision

    torch.manual_seed(3)
    m = torchvision.models.resnet18(weights=None)
    path = tmp_path_factory.mktemp("video_weights") / "resnet18.pth"
    torch.save(m.state_dict(), path)
    return path, m.state_dict()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    data = tmp_path_factory.mktemp("video_frozen") / "clips"
    synthesize(data, (1, 1, 0), seed=2, codecs=("mjpg",), progress=False)
    return data


def test_weights_file_loads_encodes_and_trains_one_step(weights):
    path, sd = weights
    enc = TorchvisionFrameEncoder("resnet18", path)
    assert torch.equal(enc.net.conv1.weight, sd["conv1.weight"]) and enc.feature_size == 512
    enc.eval()
    assert enc(torch.randn(2, 3, 32, 32)).shape == (2, 512)

    model = get_model("video-cnn-lstm", num_classes=3, frame_encoder="resnet18", hidden_size=16)
    model._encoder().load_weights(path)
    assert torch.equal(model._encoder().net.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model._encoder().net.conv1.weight.clone()
    loss = F.cross_entropy(model(torch.randn(2, 2, 3, 32, 32)), torch.tensor([0, 2]))
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(model._encoder().net.conv1.weight, before)  # end to end


def test_weights_that_do_not_fit_are_one_line(weights, tmp_path):
    path, _ = weights
    with pytest.raises(ValueError, match="does not fit mobilenet_v3_small") as e:
        TorchvisionFrameEncoder("mobilenet_v3_small", path)
    assert "\n" not in str(e.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="not a readable state dict"):
        TorchvisionFrameEncoder("resnet18", junk)
    with pytest.raises(ValueError, match="unknown frame encoder"):
        build_frame_encoder("resnet-nine")


def test_frozen_model_takes_features_or_frames_and_keeps_encoder_in_eval():
    torch.manual_seed(0)
    m = get_model("video-caption", vocab_size=9, frame_encoder="mobilenet_v3_small", freeze_encoder=True,
                  hidden_size=16, embed_size=8)
    m.train()
    assert not m.cnn.training and m.seq2seq.training
    assert not any(q.requires_grad for q in m.cnn.parameters())
    frames = torch.randn(2, 3, 3, 32, 32)
    feats = m.cnn(frames.flatten(0, 1)).view(2, 3, -1)
    m.eval()
    tgt = torch.tensor([[1, 4, 5], [1, 6, 7]])
    torch.testing.assert_close(m(frames, tgt), m(feats, tgt))


def test_cached_features_equal_on_the_fly_and_second_run_reads_cache(clips, weights, capfd):
    fe = VideoFrontEndConfig(num_frames=3, size=(32, 32), mean=IMAGENET_MEAN, std=(0.229, 0.224, 0.225))
    cs = load_clipset(clips, "train", fe, progress=False)
    torch.manual_seed(0)
    model = get_model("video-cnn-lstm", num_classes=6, frame_encoder="resnet18", freeze_encoder=True)
    f1 = frozen_features(model, cs, fe, "resnet18", "train")
    assert "cached in" in capfd.readouterr().err
    with torch.no_grad():
        enc = model._encoder().eval()
        direct = enc(uint8_to_input(cs.frames, fe).flatten(0, 1)).view(len(cs), 3, -1)
    torch.testing.assert_close(f1, direct, atol=1e-5, rtol=1e-5)
    f2 = frozen_features(model, cs, fe, "resnet18", "train")
    assert "read from" in capfd.readouterr().err and torch.equal(f1, f2)
    flipped = frozen_features(model, cs, fe, "resnet18", "train", flip=True)  # another key, not the cache above
    assert "cached in" in capfd.readouterr().err and not torch.allclose(flipped, f1)
    # new weights: never the stale cache
    model._encoder().load_weights(weights[0])
    f3 = frozen_features(model, cs, fe, "resnet18", "train")
    assert "cached in" in capfd.readouterr().err and not torch.allclose(f3, f1)
    # another front end (normalisation): never the stale cache either
    fe2 = VideoFrontEndConfig(num_frames=3, size=(32, 32))
    cs2 = load_clipset(clips, "train", fe2, progress=False)
    frozen_features(model, cs2, fe2, "resnet18", "train")
    assert "cached in" in capfd.readouterr().err
    assert weights_hash(model._encoder()) != weights_hash(get_model("video-cnn-lstm", num_classes=6,
                                                                    frame_encoder="resnet18")._encoder())


def test_cli_freeze_encoder_trains_labels_and_says_random_init(clips, weights, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", str(clips), "--out", str(out), "--frame-encoder", "resnet18", "--input-size", "32",
                 "--freeze-encoder", *TINY])
    err = capsys.readouterr().err
    assert code == 0 and "randomly initialised" in err and "cached in" in err
    b, _ = bundle.read(out / "best.pt")
    assert b["model_config"]["frame_encoder"] == "resnet18" and b["model_config"]["freeze_encoder"]
    assert b["front_end"]["mean"] == list(IMAGENET_MEAN) and b["front_end"]["size"] == [32, 32]
    code = main(["train", "--data", str(clips), "--out", str(tmp_path / "run2"), "--frame-encoder", "resnet18",
                 "--input-size", "32", "--freeze-encoder", "--weights", str(weights[0]), *TINY])
    err = capsys.readouterr().err
    assert code == 0 and "initialised from" in err
    code = main(["label", str(clips / "grow"), "--checkpoint", str(out / "best.pt"), "--json", "--threads", "1"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["n"] == 2 and res["labels"][0]["label"] in b["labels"]


def test_cli_encoder_errors(clips, weights, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(clips), "--out", str(tmp_path / "x"), "--frame-encoder", "resnet-nine"])
    assert e.value.code == 2
    capsys.readouterr()
    code = main(["train", "--data", str(clips), "--out", str(tmp_path / "x"), "--frame-encoder", "mobilenet_v3_small",
                 "--weights", str(weights[0]), *TINY])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: --weights") and "does not fit" in lines[0]
    assert not (tmp_path / "x").exists()
    code = main(["train", "--data", str(clips), "--out", str(tmp_path / "x"), "--weights", str(weights[0]), *TINY])
    assert code == 1 and "needs a torchvision --frame-encoder" in capsys.readouterr().err


def test_cli_frozen_captioner_records_no_frame_augmentation(clips, tmp_path, capsys):
    """Cached features cannot be rescaled or slowed down: a frozen-encoder captioner's bundle says so, and asking
    for a frame augmentation with --freeze-encoder is one error line."""
    out = tmp_path / "cap"
    code = main(["train", "--task", "caption", "--data", str(clips), "--out", str(out), "--frame-encoder", "resnet18",
                 "--input-size", "32", "--freeze-encoder", *TINY])
    capsys.readouterr()
    task = bundle.read(out / "best.pt")[0]["task"]
    assert code == 0 and task["scale_augment"] is None and task["speed_augment"] == 0.0 and task["freeze_encoder"]
    code = main(["train", "--task", "caption", "--data", str(clips), "--out", str(tmp_path / "x"), "--frame-encoder",
                 "resnet18", "--input-size", "32", "--freeze-encoder", "--scale-augment", "0.8,1.25", *TINY])
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: --scale-augment")
    assert not (tmp_path / "x").exists()
