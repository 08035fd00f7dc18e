"""Future-frame prediction: the ConvLSTM encoder–forecaster's shapes, the baselines, the metric code
(SSIM hand-checked, and against scikit-image when it is installed), the Moving-MNIST-style renderer, and
``train/eval/predict --task predict`` end to end on tiny data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines import bundle
from pipelines.registry import get_model
from pipelines.video.cli import main
from pipelines.video.metrics import prediction_scores, ssim
from pipelines.video.synth import digit_images, render_digits, synthesize_digits


def test_predictor_shapes_and_untrained_copies_last_frame():
    torch.manual_seed(0)
    m = get_model("video-predict-convlstm", channels=3, patch=4, hidden=[8, 8], stem_channels=8)
    ctx = torch.rand(2, 5, 3, 16, 24)
    out = m(ctx, 7)
    assert out.shape == (2, 7, 3, 16, 24)
    torch.testing.assert_close(out, ctx[:, -1:].expand_as(out))  # the change starts at zero
    out.sum().backward()
    assert m.head.weight.grad is not None and m.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of the patch"):
        m(torch.rand(1, 2, 3, 18, 16), 1)


def test_ssim_hand_checked_cases():
    a = torch.full((1, 1, 16, 16), 0.2, dtype=torch.float64)
    b = torch.full((1, 1, 16, 16), 0.6, dtype=torch.float64)
    c1 = 0.01 ** 2
    # constant images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    assert float(ssim(a, b)) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1), abs=1e-12)
    x = torch.rand(2, 3, 20, 20, dtype=torch.float64)
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    # a contrast-inverted image is structurally anti-correlated: SSIM is negative in the textured part
    assert float(ssim(x[:1], 1 - x[:1])) < 0
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((24, 20, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, channel_axis=-1)
    ours = ssim(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1))
    assert float(ours) == pytest.approx(ref, abs=1e-9)


def test_prediction_scores_and_baselines():
    ctx = torch.zeros(1, 2, 1, 12, 12)
    ctx[:, 0] = 0.2
    ctx[:, 1] = 0.4
    truth = torch.full((1, 3, 1, 12, 12), 0.5)
    s = prediction_scores(truth.clone(), truth, ctx)
    assert s["mse"] == 0 and s["ssim"] == pytest.approx(1.0)
    assert s["mse_copy_last"] == pytest.approx(0.01)  # (0.5 - 0.4)^2
    assert s["mse_mean_frame"] == pytest.approx(0.04)  # (0.5 - 0.3)^2
    assert s["n"] == 1 and s["horizon"] == 3 and len(s["per_frame"]["mse"]) == 3
    for k in ("mse", "ssim", "mse_copy_last", "ssim_copy_last", "mse_mean_frame"):
        assert isinstance(s[k], float)
    s = prediction_scores(torch.full_like(truth, 2.0), truth, ctx)  # predictions are clamped to [0, 1]
    assert s["mse"] == pytest.approx(0.25)


def test_digits_bounce_inside_the_canvas():
    imgs, labels = digit_images(28)
    assert imgs.shape == (1797, 28, 28) and imgs.dtype == np.uint8 and imgs.max() == 255
    v = render_digits(np.random.default_rng(1), imgs, frames=30)
    assert v.shape == (30, 64, 64) and v.dtype == np.uint8
    assert all(v[t].sum() > 0 for t in range(30))  # digits never leave the canvas
    assert not np.array_equal(v[0], v[5])  # they move


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_predict")
    synthesize_digits(root / "digits", (6, 2, 2), seed=1, frames=8, progress=False)
    return root


def test_cli_train_eval_predict(digits, capsys):
    root = digits
    data, run = root / "digits", root / "run"
    tiny = ["--context", "4", "--horizon", "4", "--epochs", "1", "--batch-size", "4", "--threads", "1"]
    assert main(["train", "--task", "predict", "--data", str(data), "--out", str(run), *tiny, "--json"]) == 0
    b, _ = bundle.read(run / "best.pt")
    assert b["kind"] == "video-predict" and b["extras"]["context"] == 4 and b["extras"]["horizon"] == 4
    capsys.readouterr()
    assert main(["eval", "--task", "predict", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json",
                 "--threads", "1"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"mse", "ssim", "mse_copy_last", "ssim_copy_last", "mse_mean_frame", "n"} <= set(rep)
    assert rep["n"] == 2 and rep["horizon"] == 4 and 0 <= rep["mse"] <= 1 and -1 <= rep["ssim"] <= 1
    # a shorter horizon than trained works (the forecaster unrolls as far as asked)
    assert main(["eval", "--task", "predict", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json",
                 "--horizon", "2", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["horizon"] == 2
    clip = sorted((data / "digits").glob("*test*"))[0]
    out = root / "pred"
    assert main(["predict", str(clip), "--checkpoint", str(run / "best.pt"), "--out", str(out), "--json",
                 "--threads", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    from PIL import Image

    gif, png = Image.open(res["predictions"][0]["video"]), Image.open(res["predictions"][0]["strip"])
    assert gif.n_frames == 8 and gif.size[0] == 2 * (3 * 64 + 4)  # input | truth | prediction, scaled x2
    assert png.size == (8 * 64 + 7 * 2, 2 * 64 + 2)  # K + N columns, two rows
    # a second run refuses to replace the outputs; an .mp4 name writes a video
    assert main(["predict", str(clip), "--checkpoint", str(run / "best.pt"), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["predict", str(clip), "--checkpoint", str(run / "best.pt"), "--out", str(root / "one.mp4")]) == 0
    assert (root / "one.mp4").stat().st_size > 0 and (root / "one.png").is_file()


def test_predict_needs_a_predict_checkpoint(digits, tmp_path, capsys):
    cls = tmp_path / "cls.pt"
    meta = bundle.make_meta("video-classify", "video-frame", {"num_classes": 2})
    bundle.save(bundle.complete(meta, get_model("video-frame", num_classes=2).state_dict()), cls)
    clip = sorted((digits / "digits" / "digits").glob("*"))[0]
    code = main(["predict", str(clip), "--checkpoint", str(cls), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "video-classify" in err and "video-predict" in err
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", "predict", "--data", str(digits), "--out", str(tmp_path / "r"), "--horizon", "0"])
    assert e.value.code == 2
