"""``lstm-media kws``: every verb on a tiny synthesised data set with bad files mixed in; bundles,
resume, config mismatch, wrong kind, shipped defaults, checked flags, outputs that never destroy inputs."""
import contextlib
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from encoders.io.audio import write_wav
from pipelines import bundle
from pipelines.kws.cli import main, read_truth

from test_kws_io import make_bad_files

MODELS = Path(bundle.__file__).resolve().parent / "models"


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args):
    """``lstm-media kws ARGS`` in this process (no interpreter start-up per call); its exit code and streams."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return Result(rc, out.getvalue(), err.getvalue())


def one_error_line(r, *needles):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert str(n) in errors[0], errors[0]
    return errors[0]


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


TRAIN = ("--words", "yes", "no", "--epochs", "2", "--hidden", "16", "--layers", "1", "--batch-size", "8",
         "--device", "cpu")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthesised dataset (3 words, 13 voices) with bad files mixed in, and a few training steps."""
    d = tmp_path_factory.mktemp("kws")
    data, run = d / "data", d / "run"
    r = run_cli("synth", "--out", data, "--words", "yes", "no", "cat", "--engines", "espeak", "flite",
                "--variants-per-accent", "1", "--flite-variants", "1", "--espeak-takes", "1", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["clips"] == 3 * (8 + 5 * 1) and summary["failed"] == 0
    bad = make_bad_files(data / "yes")
    r = run_cli("train", "--data", data, "--out", run, *TRAIN, "--json")
    assert r.returncode == 0, r.stderr
    return data, run, bad, json.loads(r.stdout), r.stderr


def test_synth_layout(tiny_run):
    data = tiny_run[0]
    for w in ("yes", "no", "cat"):
        clips = sorted((data / w).glob("*-*_nohash_*.wav"))
        assert len(clips) >= 13
        info = sf.info(clips[0])
        assert info.samplerate == 16000 and info.frames == 16000 and info.channels == 1
    assert (data / "validation_list.txt").is_file() and (data / "testing_list.txt").is_file()
    assert len(list((data / "_background_noise_").glob("*.wav"))) >= 5
    meta = json.loads((data / "synth.json").read_text())
    listed = (data / "testing_list.txt").read_text().split() + (data / "validation_list.txt").read_text().split()
    test_voices = {Path(p).name.split("_nohash_")[0] for p in (data / "testing_list.txt").read_text().split()}
    train_voices = {p.name.split("_nohash_")[0] for p in data.glob("*/*_nohash_*.wav")} - \
        {Path(p).name.split("_nohash_")[0] for p in listed}
    assert not (test_voices & train_voices)  # split by voice, never by clip
    assert len(meta["voices"]) == 13


def test_synth_refuses_a_folder_with_files(tiny_run):
    data = tiny_run[0]
    before = digest(data / "testing_list.txt")
    r = run_cli("synth", "--out", data, "--words", "yes", "--variants-per-accent", "0", "--flite-takes", "1")
    one_error_line(r, data, "--overwrite")
    assert digest(data / "testing_list.txt") == before


def test_train_writes_a_kws_bundle_and_skips_bad_files(tiny_run):
    data, run, bad, summary, stderr = tiny_run
    assert (run / "best.pt").is_file() and (run / "loss.png").is_file()
    assert summary["skipped"] == len(bad)  # names share one speaker: all in one split
    for p in bad.values():
        assert str(p) in stderr
    b = torch.load(run / "best.pt", weights_only=True)
    bundle.check(b)
    assert b["kind"] == "kws" and b["model"] == "kws-lstm"
    assert b["labels"] == ["_silence_", "_unknown_", "yes", "no"]
    assert b["model_config"]["hidden_size"] == 16 and b["model_config"]["n_classes"] == 4
    assert b["front_end"]["kind"] == "mfcc" and b["task"]["words"] == ["yes", "no"] and b["task"]["epochs"] == 2
    assert b["extras"]["detect_config"]["threshold"] == 0.7 and "trainer" in b
    assert b["data"]["generator"]["voices"] == 13 and b["data"]["clips"]["training"] > 0
    assert "feat_mean" in b["state_dict"] and float(b["state_dict"]["feat_std"].min()) > 0
    assert "accuracy" in b["metrics"]["val"]


def test_second_train_resumes_and_a_changed_setting_stops(tiny_run, tmp_path):
    data, run, _, _, _ = tiny_run
    before = digest(run / "last.pt")
    r = run_cli("train", "--data", data, "--out", run, *TRAIN)
    assert r.returncode == 0, r.stderr
    assert f"resuming from {run / 'last.pt'} at epoch 2" in r.stderr
    r = run_cli("train", "--data", data, "--out", run, *TRAIN, "--lr", "0.01")
    err = one_error_line(r, "lr", "--fresh")
    assert "0.003" in err and "0.01" in err
    assert digest(run / "last.pt") == before  # refused before anything was written


def test_eval_json_and_png_with_and_without_lists(tiny_run, tmp_path):
    data, run, bad, _, _ = tiny_run
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", data, "--json", "--png", tmp_path / "cm.png")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert {"accuracy", "per_class", "n"} <= set(rep) and rep["n"] > 0 and (tmp_path / "cm.png").is_file()
    # a folder without list files: every file counts (bad ones skipped and counted)
    flat = tmp_path / "flat"
    for p in list(data.glob("no/*.wav"))[:4] + list(bad.values()):
        (flat / "no").mkdir(parents=True, exist_ok=True)
        (flat / "no" / p.name).write_bytes(p.read_bytes())
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", flat, "--json", "--png", tmp_path / "cm2.png")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["n"] == 4 and rep["skipped"] == len(bad) and rep["split"] == "all"
    # the PNG exists now: not replaced without --overwrite
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", flat, "--png", tmp_path / "cm2.png")
    one_error_line(r, tmp_path / "cm2.png", "--overwrite")


def test_eval_on_nothing_is_an_error_and_creates_nothing(tiny_run, tmp_path):
    run, bad = tiny_run[1], tiny_run[2]
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", tmp_path / "missing", "--png", tmp_path / "m.png")
    one_error_line(r, tmp_path / "missing")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "m.png").exists()
    only_bad = tmp_path / "bad"
    make_bad_files(only_bad / "yes")
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", only_bad, "--png", tmp_path / "b.png", "--json")
    one_error_line(r, only_bad, "no usable clips")
    assert r.stdout == "" and not (tmp_path / "b.png").exists()
    # list files that name only missing files
    lists = tmp_path / "lists"
    write_wav(lists / "yes" / "aaa_nohash_0.wav", np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3)
    (lists / "testing_list.txt").write_text("yes/gone_nohash_0.wav\n")
    r = run_cli("eval", "--checkpoint", run / "best.pt", "--data", lists)
    one_error_line(r, "no usable clips", "testing")


def test_predict_and_detect(tiny_run, tmp_path):
    data, run, bad, _, _ = tiny_run
    good = sorted(data.glob("no/*.wav"))[0]
    r = run_cli("predict", "--checkpoint", run / "best.pt", good, bad["text"], "--json")
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)["predictions"]
    assert preds[0]["label"] in ("_silence_", "_unknown_", "yes", "no") and 0 <= preds[0]["score"] <= 1
    assert "error" in preds[1] and str(bad["text"]) in r.stderr
    r = run_cli("predict", "--checkpoint", run / "best.pt", bad["text"], bad["silent"])
    one_error_line(r, "none of the 2 files")
    wav = tmp_path / "long.wav"
    r = run_cli("stream-wav", "--data", data, "--out", wav, "--words", "yes", "no", "--keywords", "3",
                "--unknown", "1")
    assert r.returncode == 0, r.stderr
    truth = json.loads(wav.with_suffix(".json").read_text())
    assert len(truth) == 4 and sf.info(wav).duration > 4 * 2 and read_truth(wav.with_suffix(".json")) == truth
    r = run_cli("detect", "--checkpoint", run / "best.pt", wav, "--json", "--threshold", "0.0", "--threads", "1")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["rtf"] > 0 and res["score"]["keywords"] == 3 and len(res["detections"]) >= 1
    r = run_cli("detect", "--checkpoint", run / "best.pt", wav, "--threshold", "0.0", "--threads", "1")
    assert r.returncode == 0 and "real-time factor" in r.stdout and "1 thread," in r.stdout
    r = run_cli("detect", "--checkpoint", run / "best.pt", bad["empty"])
    one_error_line(r, bad["empty"])


@pytest.mark.parametrize("content", [b'{"settings": {"a": 1}}', b'[1, 2, 3]', b'\xff\xfe not json',
                                     b'[{"word": "yes"}]'])
def test_detect_ignores_an_unrelated_json_beside_the_recording(tiny_run, tmp_path, content):
    data, run = tiny_run[0], tiny_run[1]
    wav = tmp_path / "rec.wav"
    write_wav(wav, np.concatenate([np.zeros(8000, np.float32), sf.read(sorted(data.glob("yes/*-*_nohash_*.wav"))[0])[0]
                                   .astype(np.float32)]))
    (tmp_path / "rec.json").write_bytes(content)
    r = run_cli("detect", "--checkpoint", run / "best.pt", wav, "--json")
    assert r.returncode == 0, r.stderr
    assert "score" not in json.loads(r.stdout)
    warn = [l for l in r.stderr.splitlines() if "rec.json" in l]
    assert len(warn) == 1 and warn[0].startswith("warning:") and "Traceback" not in r.stderr
    # named explicitly, the same file is an error
    r = run_cli("detect", "--checkpoint", run / "best.pt", wav, "--truth", tmp_path / "rec.json")
    one_error_line(r, "--truth", "rec.json")
    r = run_cli("detect", "--checkpoint", run / "best.pt", wav, "--truth", tmp_path / "none.json")
    one_error_line(r, "none.json")


def test_wrong_kind_checkpoint_is_one_line(tmp_path):
    meta = bundle.make_meta("music", "music-lstm", {"vocab_size": 8}, vocab=list(range(8)))
    bundle.save(bundle.complete(meta, {}), tmp_path / "music.pt")
    wav = tmp_path / "c.wav"
    write_wav(wav, np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3)
    for verb in (["predict", wav], ["detect", wav], ["eval", "--data", tmp_path]):
        r = run_cli(*verb, "--checkpoint", tmp_path / "music.pt")
        one_error_line(r, tmp_path / "music.pt", "music checkpoint", "needs a kws checkpoint")
    # the installed command: exit code and stderr of a real process
    p = subprocess.run([sys.executable, "-m", "pipelines.cli", "kws", "predict", str(wav), "--checkpoint",
                        str(tmp_path / "music.pt")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "is a music checkpoint" in p.stderr
    # a bare tensor, a missing file
    torch.save(torch.ones(3), tmp_path / "bare.pt")
    one_error_line(run_cli("predict", wav, "--checkpoint", tmp_path / "bare.pt"), "bare.pt", "not an lstm-media")
    one_error_line(run_cli("predict", wav, "--checkpoint", tmp_path / "nope.pt"), "nope.pt")


@pytest.mark.parametrize("argv", [
    ["train", "--data", "d", "--out", "o", "--epochs", "0"],
    ["train", "--data", "d", "--out", "o", "--batch-size", "0"],
    ["train", "--data", "d", "--out", "o", "--lr", "nan"],
    ["train", "--data", "d", "--out", "o", "--lr", "-1"],
    ["train", "--data", "d", "--out", "o", "--hidden", "0"],
    ["train", "--data", "d", "--out", "o", "--threads", "0"],
    ["train", "--data", "d", "--out", "o", "--max-steps", "-3"],
    ["synth", "--workers", "0"],
    ["synth", "--espeak-takes", "0"],
    ["stream-wav", "--data", "d", "--out", "o.wav", "--keywords", "0"],
    ["stream-wav", "--data", "d", "--out", "o.wav", "--snr", "inf"],
    ["detect", "x.wav", "--threshold", "1.5"],
    ["detect", "x.wav", "--block-ms", "0"],
    ["detect", "x.wav", "--device", "gpu"],
    ["predict", "x.wav", "--threads", "-1"],
    ["demo", "--epochs", "0"],
])
def test_numeric_flags_are_checked_at_parse_time(argv, tmp_path):
    r = run_cli(*argv)
    assert r.returncode == 2 and "usage:" in r.stderr and "Traceback" not in r.stderr
    assert not (Path("o")).exists() and not Path("o.wav").exists()


def test_duplicate_or_reserved_words_are_one_line(tiny_run, tmp_path):
    data = tiny_run[0]
    one_error_line(run_cli("train", "--data", data, "--out", tmp_path / "r", "--words", "yes", "yes"), "yes")
    one_error_line(run_cli("train", "--data", data, "--out", tmp_path / "r", "--words", "_silence_", "no"),
                   "_silence_")
    assert not (tmp_path / "r").exists()


def test_outputs_never_destroy_inputs(tiny_run, tmp_path):
    data, run = tiny_run[0], tiny_run[1]
    ck = run / "best.pt"
    before = digest(ck)
    r = run_cli("eval", "--checkpoint", ck, "--data", data, "--png", ck, "--overwrite")
    one_error_line(r, ck, "inputs")
    assert digest(ck) == before
    clip = sorted(data.glob("no/*.wav"))[0]
    clip_hash = digest(clip)
    r = run_cli("stream-wav", "--data", data, "--out", clip, "--words", "yes", "no", "--overwrite")
    one_error_line(r, "inside the dataset")
    assert digest(clip) == clip_hash
    existing = tmp_path / "mine.wav"
    existing.write_bytes(b"precious")
    r = run_cli("stream-wav", "--data", data, "--out", existing, "--words", "yes", "no")
    one_error_line(r, existing, "--overwrite")
    assert existing.read_bytes() == b"precious"
    (tmp_path / "other.json").write_text("precious")
    r = run_cli("stream-wav", "--data", data, "--out", tmp_path / "other.wav", "--words", "yes", "no")
    one_error_line(r, "other.json")
    assert not (tmp_path / "other.wav").exists() and (tmp_path / "other.json").read_text() == "precious"
    # --out a folder: the recording goes inside it
    r = run_cli("stream-wav", "--data", data, "--out", tmp_path, "--words", "yes", "no", "--keywords", "2",
                "--unknown", "0")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "long.wav").is_file() and (tmp_path / "long.json").is_file()


@pytest.mark.skipif(not (MODELS / "kws.pt").is_file() or not (MODELS / "kws-digits.pt").is_file(),
                    reason="shipped kws models not built (make models)")
def test_shipped_models_are_the_default_and_pick_by_name(tiny_run, tmp_path):
    data = tiny_run[0]
    yes = sorted(data.glob("yes/*-*_nohash_*.wav"))[0]
    r = run_cli("predict", yes, "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)["predictions"][0]
    shipped = torch.load(MODELS / "kws.pt", weights_only=True)
    assert p["label"] in shipped["labels"] and len(shipped["labels"]) == 12
    r = run_cli("predict", yes, "--json", "--checkpoint", "kws-digits")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predictions"][0]["label"] in ("_silence_", "_unknown_", "zero", "one", "two",
                                                                "three", "four", "five", "six", "seven", "eight",
                                                                "nine")
    wav = tmp_path / "long.wav"
    assert run_cli("stream-wav", "--data", data, "--out", wav, "--words", "yes", "no", "--keywords", "2").returncode == 0
    r = run_cli("detect", wav, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["checkpoint"] == str(MODELS / "kws.pt")
    for name in ("kws", "kws-digits"):
        b = torch.load(MODELS / f"{name}.pt", weights_only=True)
        bundle.check(b)
        assert b["kind"] == "kws" and "trainer" not in b and (MODELS / f"{name}.pt").stat().st_size <= 3e6
        held = b["metrics"]["held_out"]
        assert 0 <= held["test_accuracy"] <= 1 and held["test_n"] > 0 and b["extras"]["description"]


@pytest.mark.skipif(not (MODELS / "kws.pt").is_file(), reason="shipped kws model not built (make models)")
def test_shipped_model_still_spots_fresh_held_out_voices(tmp_path):
    """Freshly synthesised clips (another seed: other renditions) of voices whose identity falls in the
    testing split, which no shipped model ever heard."""
    data = tmp_path / "fresh"
    r = run_cli("synth", "--out", data, "--words", "yes", "no", "stop", "go", "--variants-per-accent", "10",
                "--espeak-takes", "1", "--flite-variants", "2", "--festival-variants", "2", "--piper-variants", "4",
                "--seed", "7")
    assert r.returncode == 0, r.stderr
    r = run_cli("eval", "--data", data, "--split", "testing", "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["n"] >= 12 and rep["accuracy"] >= 0.8, rep


def test_ship_quick_writes_loadable_bundles(tmp_path):
    from pipelines.kws.ship import ship

    rows = ship(tmp_path / "work", tmp_path / "models", quick=True)
    assert [r["name"] for r in rows] == ["kws", "kws-digits"]
    for row in rows:
        model, b = bundle.load(tmp_path / "models" / f"{row['name']}.pt", "kws")
        assert b["extras"]["description"] and b["metrics"]["held_out"] == row["held_out"]
        assert row["held_out"]["test_n"] > 0 and row["held_out"]["stream_keywords"] > 0
        for engine in ("espeak", "flite"):  # leave-one-engine-out figures beside the by-voice ones
            assert 0 <= row["held_out"][f"loeo_{engine}_accuracy"] <= 1 and row["held_out"][f"loeo_{engine}_n"] > 0
        try:  # the outside engine, when SVOX Pico is installed (make setup installs it)
            import ttspico  # noqa: F401
            assert 0 <= row["held_out"]["outside_pico_accuracy"] <= 1 and row["held_out"]["outside_pico_n"] > 0
        except ImportError:
            assert "outside_pico_accuracy" not in row["held_out"]
        assert row["size_bytes"] == (tmp_path / "models" / f"{row['name']}.pt").stat().st_size <= 3e6
        assert "trainer" not in b and b["state_dict"]["head.weight"].dtype == torch.float16
        assert b["labels"][2:] == (["yes", "no"] if row["name"] == "kws" else ["zero", "one"])
    # a second ship reuses the synthesised data
    before = (tmp_path / "work" / "data" / "synth.json").stat().st_mtime_ns
    ship(tmp_path / "work", tmp_path / "models2", quick=True, loeo=False)
    assert (tmp_path / "work" / "data" / "synth.json").stat().st_mtime_ns == before
