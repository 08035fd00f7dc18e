"""The gate explainer shows the LSTM's mechanism, numerically and as a PNG."""
import json
import subprocess
import sys

import pytest
import torch

from pipelines import bundle
from pipelines.explain import cell_steps, explain_adding, rank_units
from pipelines.long_memory import adding_problem

HAVE_ADDING = bundle.shipped_path("adding-lstm") is not None


def test_rank_units_prefers_units_that_write_at_the_marks():
    T, H = 50, 4
    c = torch.zeros(T, H)
    marks = torch.zeros(T, dtype=torch.bool)
    marks[[5, 20]] = True
    c[5:, 2] += 1.0  # steps at the marks, then holds
    c[20:, 2] += 0.5
    c[:, 0] = torch.linspace(0, 3, T)  # drifts all the time: large total change, nothing special at marks
    c[5:, 1] += 0.01  # writes at a mark, but too little to matter
    assert rank_units(c, marks)[0] == 2
    assert rank_units(c)[0] == 0  # without marks: the busiest unit
    at, off = cell_steps(c, marks, [2])
    assert at == pytest.approx(0.75) and off == pytest.approx(0.0)


@pytest.mark.skipif(not HAVE_ADDING, reason="no shipped adding-lstm")
def test_adding_lstm_writes_at_the_marks_and_holds(tmp_path):
    model, _ = bundle.load("adding-lstm")
    ratios, forgets = [], []
    for seed in range(8):
        res = explain_adding(model, 100, seed, 12, tmp_path / f"g{seed}.png")
        ratios.append(res["ratio"])
        forgets.append(res["mean_forget_top_units"])
        assert abs(res["prediction"] - res["target"]) < 0.04
    # the top units' cell state changes many times more at the two marked steps than anywhere else,
    # and their forget gates stay near 1 so that what was written is held to the end
    assert min(ratios) > 5, ratios
    assert min(forgets) > 0.9, forgets
    assert (tmp_path / "g0.png").stat().st_size > 20000


@pytest.mark.skipif(not HAVE_ADDING, reason="no shipped adding-lstm")
def test_explain_command_writes_the_png_and_never_overwrites(tmp_path):
    out = tmp_path / "gates.png"
    cmd = [sys.executable, "-m", "pipelines.cli", "explain", "--task", "adding", "--out", str(out), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["ratio"] > 5 and out.stat().st_size > 20000
    before = out.read_bytes()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "--overwrite" in r.stderr
    assert out.read_bytes() == before


@pytest.mark.skipif(bundle.shipped_path("kws") is None, reason="no shipped kws model")
def test_explain_kws_draws_the_spotter_gates(tmp_path):
    import wave

    import numpy as np

    clip = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((0.3 * np.sin(2 * np.pi * 300 * t) * 32767 * (t > 0.3) * (t < 0.7)).astype(np.int16).tobytes())
    out = tmp_path / "k.png"
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "explain", "--task", "kws", "--input", str(clip),
                        "--out", str(out), "--json", "--top", "8"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    labels = bundle.read("kws")[0]["labels"]
    assert res["label"] in labels and res["steps"] > 20 and len(res["top_units"]) == 8
    assert out.stat().st_size > 20000
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "explain", "--task", "kws", "--out", str(tmp_path / "x.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "--input" in r.stderr


@pytest.mark.skipif(bundle.shipped_path("kws") is None, reason="no shipped kws model")
def test_kws_predict_gates_draws_one_picture_per_clip(tmp_path):
    import wave

    import numpy as np

    clip = tmp_path / "a.wav"
    with wave.open(str(clip), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((0.2 * np.sin(np.arange(16000) * 0.1) * 32767).astype(np.int16).tobytes())
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "kws", "predict", str(clip), "--gates",
                        str(tmp_path / "g"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    pred = json.loads(r.stdout)["predictions"][0]
    assert pred["gates_png"] == str(tmp_path / "g" / "a.gates.png")
    assert (tmp_path / "g" / "a.gates.png").stat().st_size > 20000
