"""``lstm-media kws export`` and ``detect --engine``: the exported streaming step (audio block + state in,
posteriors + state out) equals PyTorch, gives the same detections, takes any whole-step block length and
batch; int8 exports are smaller and stay close; errors are one line.  The ONNX tests need the ``[deploy]``
extra (onnx, onnxruntime) and skip only when it is absent."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.io.audio import load_audio
from pipelines import bundle
from pipelines.kws.cli import main
from pipelines.kws.data import make_labels
from pipelines.kws.export import StreamStep, export, load_engine
from pipelines.kws.stream import DetectConfig, TorchEngine, stream_posteriors
from pipelines.registry import get_model

MODELS = Path(__file__).resolve().parents[1] / "pipelines" / "models"
needs_shipped = pytest.mark.skipif(not (MODELS / "kws.pt").is_file(), reason="shipped kws model not built (make models)")


def tiny_bundle(path: Path, bidirectional=False, seed=0, cmn_frames=0) -> Path:
    torch.manual_seed(seed)
    kwargs = {"n_classes": 5, "hidden_size": 24, "num_layers": 2, "bidirectional": bidirectional}
    if cmn_frames:
        kwargs["cmn_frames"] = cmn_frames
    m = get_model("kws-lstm", **kwargs).eval()
    m.set_normalisation(torch.randn(40) * 10, torch.rand(40) * 5 + 1)
    meta = bundle.make_meta("kws", "kws-lstm", kwargs, front_end=m.feature_config.to_dict(),
                            labels=make_labels(["a", "b", "c"]), extras={"detect_config": DetectConfig().to_dict()})
    bundle.save(bundle.complete(meta, m.state_dict()), path)
    return path


def noise(seconds, seed=0):
    g = np.random.default_rng(seed)
    return (g.standard_normal(int(seconds * 16000)) * 0.1 * np.linspace(0.2, 2, int(seconds * 16000))).astype(np.float32)


@pytest.mark.parametrize("fmt,cmn", [("onnx", 0), ("torchscript", 0), ("onnx", 100), ("torchscript", 100)])
def test_export_equals_pytorch_for_any_block_and_batch(fmt, cmn, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    ck = tiny_bundle(tmp_path / "m.pt", cmn_frames=cmn)
    res = export(ck, tmp_path / "exp", fmt)
    assert res["max_abs_diff"] < 1e-5 and Path(res["file"]).is_file()
    meta = json.loads((tmp_path / "exp" / "meta.json").read_text())
    assert (meta["engine"], meta["step_samples"], meta["tail_samples"], meta["labels"][0]) == (fmt, 480, 352, "_silence_")
    assert meta["cmn_frames"] == cmn and meta["version"] == 2
    model, _ = bundle.load(ck, "kws")
    eng = load_engine(tmp_path / "exp")
    w = noise(4.0)
    ref = stream_posteriors(TorchEngine(model), w, 16000)
    for block in (160, 480, 1234, 8000):  # 10 ms ... 500 ms pushes: 1 to 16 steps per model call
        got = stream_posteriors(eng, w, block)
        assert got.shape == ref.shape == ((len(w) - 352) // 480, 5)
        np.testing.assert_allclose(got, ref, atol=1e-4)
    # a batch of whole clips in one call: the last step's posteriors are the model's clip posteriors
    clips = np.stack([noise(1.0, s) for s in range(3)])
    with torch.no_grad():
        want = model(torch.from_numpy(clips)).softmax(-1).numpy()
    np.testing.assert_allclose(eng.clip_posteriors(clips), want, atol=1e-4)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_int8_export_is_smaller_and_close(fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    kwargs = {"n_classes": 12, "hidden_size": 128, "num_layers": 2}  # the default size: weights dominate the file
    m = get_model("kws-lstm", **kwargs).eval()
    meta = bundle.make_meta("kws", "kws-lstm", kwargs, front_end=m.feature_config.to_dict(),
                            labels=make_labels([str(i) for i in range(10)]))
    ck = bundle.save(bundle.complete(meta, m.state_dict()), tmp_path / "m.pt")
    f32 = export(ck, tmp_path / "f32", fmt)
    i8 = export(ck, tmp_path / "i8", fmt, int8=True)
    assert i8["int8"] and i8["bytes"] < 0.75 * f32["bytes"]
    w = noise(3.0, 1)
    a = stream_posteriors(load_engine(tmp_path / "f32"), w, 4800)
    b = stream_posteriors(load_engine(tmp_path / "i8"), w, 4800)
    assert 0 < np.abs(a - b).max() < 0.1  # quantised: different, but close


@needs_shipped
def test_onnx_engine_matches_torch_on_a_long_recording(kws_stream_recording, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "kws-onnx"
    assert main(["export", "kws", "--format", "onnx", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_diff"] < 1e-5
    model, _ = bundle.load("kws", "kws")
    w = np.tile(load_audio(kws_stream_recording, sr=16000), 3)  # ~40 s
    ref = stream_posteriors(TorchEngine(model), w, 8000)
    got = stream_posteriors(load_engine(out), w, 8000)
    assert len(ref) > 1000
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # and through the CLI: identical detections, at the default 500 ms and at 10 ms blocks
    found = {}
    for engine, extra in (("torch", []), ("onnx", ["--checkpoint", str(out)])):
        for block in ("500", "10"):
            assert main(["detect", str(kws_stream_recording), "--engine", engine, *extra, "--block-ms", block,
                         "--json", "--threads", "1"]) == 0
            res = json.loads(capsys.readouterr().out)
            found[engine, block] = res["detections"]
            assert res["engine"] == engine
    ref = found["torch", "500"]
    assert len(ref) >= 3
    for key, dets in found.items():  # the same detections (time, word); scores equal to float rounding
        assert [d[:2] for d in dets] == [d[:2] for d in ref], key
        assert np.allclose([d[2] for d in dets], [d[2] for d in ref], atol=2e-4), key


def test_export_and_engine_errors_are_one_line(tmp_path, capsys):
    ck = tiny_bundle(tmp_path / "m.pt")
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, noise(1.0), 16000)

    def err(argv):
        rc = main(argv)
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error:"), lines
        return lines[0]

    assert "needs --checkpoint DIR" in err(["detect", str(wav), "--engine", "onnx"])
    assert "not an exported folder" in err(["detect", str(wav), "--engine", "torchscript", "--checkpoint", str(ck)])
    assert "meta.json" in err(["detect", str(wav), "--engine", "torchscript", "--checkpoint", str(tmp_path)])
    assert main(["export", str(ck), "--format", "torchscript", "--out", str(tmp_path / "ts")]) == 0
    capsys.readouterr()
    assert "exists" in err(["export", str(ck), "--format", "torchscript", "--out", str(tmp_path / "ts")])
    assert "--engine torchscript, not onnx" in err(["detect", str(wav), "--engine", "onnx", "--checkpoint",
                                                    str(tmp_path / "ts")])
    assert main(["export", str(ck), "--format", "torchscript", "--out", str(tmp_path / "ts"), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["detect", str(wav), "--engine", "torchscript", "--checkpoint", str(tmp_path / "ts"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "torchscript"
    bi = tiny_bundle(tmp_path / "bi.pt", bidirectional=True)
    assert "bidirectional" in err(["export", str(bi), "--format", "torchscript", "--out", str(tmp_path / "bi")])
    with pytest.raises(SystemExit) as e:
        main(["export", str(ck), "--format", "tflite", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


@pytest.mark.parametrize("cmn", [0, 60])
def test_stream_step_is_the_model_step(cmn):
    """The exported step on its own, in PyTorch: state in, state out, chunks == whole."""
    torch.manual_seed(1)
    m = get_model("kws-lstm", n_classes=4, hidden_size=16, num_layers=1, cmn_frames=cmn).eval()
    step = StreamStep(m)
    w = torch.from_numpy(noise(2.0, 3))
    n = (len(w) - 352) // 480 * 480
    z, zm = torch.zeros(1, 1, 16), torch.zeros(1, 40)
    with torch.no_grad():
        whole, *_ = step(w[None, 352: 352 + n], w[None, :352], z, z, zm)
        tail, h, c, mm, parts = w[None, :352], z, z, zm, []
        for s in range(352, 352 + n, 960):
            p, tail, h, c, mm = step(w[None, s: min(s + 960, 352 + n)], tail, h, c, mm)
            parts.append(p)
        clip = m(w[None, : 352 + n]).softmax(-1)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(whole[:, -1], clip, atol=1e-4, rtol=1e-4)
