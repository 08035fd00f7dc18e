"""Every command of every job against careless users and broken files (issue #10).

Each probe runs one `lstm-media` command in-process and checks the contract: the exit code (2 for a bad
flag, 1 for an expected failure), stderr holds one `error:` line naming the offending file or flag and no
traceback, and no input or pre-existing file changed (hashes before and after).
"""
import hashlib
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import bundle
from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]
MIDI = ROOT / "tests" / "data" / "music" / "bwv269.mid"
SHIPPED = set(bundle.shipped_names())


def write_wav(path: Path, seconds=1.0, sr=16000, freq=440.0, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    pcm = (amp * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return path


def write_clip(path: Path, frames=16, size=48):
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    for k in range(frames):
        img = np.zeros((size, size, 3), np.uint8)
        cv2.circle(img, (8 + k * 2, size // 2), 6, (0, 0, 255), -1)
        w.write(img)
    w.release()
    assert path.stat().st_size > 0
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("probes")
    f = {"dir": d, "wav": write_wav(d / "clip.wav"), "long": write_wav(d / "long.wav", seconds=3.0),
         "mp4": write_clip(d / "clip.mp4"), "mid": d / "primer.mid"}
    f["mid"].write_bytes(MIDI.read_bytes())
    (d / "bad.wav").write_bytes(b"RIFF....not audio")
    (d / "bad.mp4").write_bytes(b"\x00" * 100)
    (d / "bad.mid").write_bytes(b"MThd garbage")
    (d / "notes.txt").write_text("hello")
    torch.save(torch.ones(3), d / "tensor.pt")
    bundle.save(bundle.complete(bundle.make_meta("music", "music-lstm", {}), {}), d / "music-kind.pt")
    bundle.save(bundle.complete(bundle.make_meta("kws", "kws-lstm", {}), {}), d / "kws-kind.pt")
    (d / "srt.mp4").write_bytes(f["mp4"].read_bytes())
    (d / "srt.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nmine\n")
    (d / "existing.mid").write_bytes(MIDI.read_bytes())
    (d / "gates.png").write_bytes(b"not mine to replace")
    (d / "empty").mkdir()
    (d / "midis").mkdir()
    (d / "midis" / "good.mid").write_bytes(MIDI.read_bytes())
    (d / "midis" / "bad.mid").write_bytes(b"MThd garbage")
    return f


def snapshot(d: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*") if p.is_file()}


def probe(capsys, argv, files):
    before = snapshot(files["dir"])
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out = capsys.readouterr()
    after = snapshot(files["dir"])
    changed = [p.name for p in before if after.get(p) != before[p]]
    assert not changed, f"inputs changed: {changed}"
    assert "Traceback" not in out.err
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


# --- bad flags: argparse's usage error, exit 2, naming the flag -----------------------------------------
BAD_FLAGS = [
    ("kws train --data D --out O --epochs 0", "--epochs"),
    ("kws train --data D --out O --batch-size 0", "--batch-size"),
    ("kws train --data D --out O --lr nan", "--lr"),
    ("kws train --data D --out O --hidden 0", "--hidden"),
    ("kws predict x.wav --threads 0", "--threads"),
    ("kws detect x.wav --block-ms 0", "--block-ms"),
    ("kws detect x.wav --device gpu", "--device"),
    ("video train --data D --out O --epochs 0", "--epochs"),
    ("video label x.mp4 --top-k 0", "--top-k"),
    ("video label x.mp4 --segment nan", "--segment"),
    ("video caption x.mp4 --beam 0", "--beam"),
    ("music train --data D --out O --hidden 0", "--hidden"),
    ("music train --data D --out O --epochs 0", "--epochs"),
    ("music generate --out o.mid --seconds 1e9", "--seconds"),
    ("music generate --out o.mid --seconds inf", "--seconds"),
    ("music generate --out o.mid --temperature nan", "--temperature"),
    ("music generate --out o.mid --temperature 0", "--temperature"),
    ("music generate --out o.mid --top-p 0", "--top-p"),
    ("music generate --out o.mid --top-k -1", "--top-k"),
    ("long-memory --batch-size 0", "--batch-size"),
    ("explain --task adding --top 0", "--top"),
]


@pytest.mark.parametrize("cmd,flag", BAD_FLAGS, ids=[c for c, _ in BAD_FLAGS])
def test_bad_flag_is_a_usage_error(capsys, files, cmd, flag):
    code, _, err = probe(capsys, cmd.split(), files)
    assert code == 2 and flag in err and "error:" in err


# --- missing inputs: one line naming the path, exit 1, nothing created ----------------------------------
MISSING = [
    "kws eval --data {m}", "kws predict {m}.wav", "kws detect {m}.wav", "kws train --data {m} --out {o}",
    "video eval --data {m}", "video label {m}.mp4", "video caption {m}.mp4", "video train --data {m} --out {o}",
    "music eval --data {m}", "music train --data {m} --out {o}", "music stats {m}",
    "music generate --primer {m}.mid --out {o}.mid", "info {m}.pt", "explain --task kws --input {m}.wav --out {o}.png",
]


@pytest.mark.parametrize("cmd", MISSING)
def test_missing_input_is_one_line_and_creates_nothing(capsys, files, cmd):
    m, o = files["dir"] / "missing", files["dir"] / "newout"
    code, _, err = probe(capsys, cmd.format(m=m, o=o).split(), files)
    one_error_line(err)
    assert code == 1 and "missing" in err  # batch commands name each unreadable file, then fail in one line
    assert not m.exists() and not any(files["dir"].glob("newout*"))


# --- checkpoints that cannot serve: a bare tensor, another job's bundle, text -------------------------------
CHECKPOINT_USERS = ["kws predict {wav}", "kws detect {long}", "kws eval --data {dir}/empty",
                    "video label {mp4}", "video caption {mp4}", "video eval --data {dir}/empty",
                    "music generate --out {dir}/new.mid --seconds 2", "music eval --data {dir}/empty",
                    "explain --task kws --input {wav} --out {dir}/x.png"]


@pytest.mark.parametrize("bad", ["tensor.pt", "notes.txt", "kind"])
@pytest.mark.parametrize("cmd", CHECKPOINT_USERS)
def test_bad_checkpoint_is_one_line(capsys, files, cmd, bad):
    d = files["dir"]
    ck = d / bad
    if bad == "kind":  # a bundle of another job
        ck = d / ("kws-kind.pt" if not cmd.startswith(("kws", "explain")) else "music-kind.pt")
    argv = cmd.format(dir=d, wav=files["wav"], long=files["long"], mp4=files["mp4"]).split()
    code, _, err = probe(capsys, argv + ["--checkpoint", str(ck)], files)
    line = one_error_line(err)
    assert code == 1 and str(ck) in line
    if bad == "kind":
        assert "checkpoint;" in line and "needs a" in line
    assert not (d / "new.mid").exists() and not (d / "x.png").exists()


# --- outputs never destroy inputs or files the command did not make --------------------------------------
def needs(*names):
    return pytest.mark.skipif(not set(names) <= SHIPPED, reason=f"shipped {names} absent")


OVER = [
    pytest.param("video label {mp4} --out {mp4}", "inputs", marks=needs("video-classify")),
    pytest.param("video caption {mp4} --out {mp4}", "inputs", marks=needs("video-caption")),
    pytest.param("video label {dir}/srt.mp4 --segment 1", "overwrite", marks=needs("video-classify")),
    pytest.param("music generate --primer {mid} --out {mid} --seconds 2", "inputs", marks=needs("music")),
    pytest.param("music generate --out {dir}/existing.mid --seconds 2", "overwrite", marks=needs("music")),
    pytest.param("explain --task kws --input {wav} --out {wav}", "inputs", marks=needs("kws")),
    pytest.param("explain --task adding --out {dir}/gates.png", "overwrite", marks=needs("adding-lstm")),
]


@pytest.mark.parametrize("cmd,why", OVER)
def test_outputs_never_replace_inputs_or_existing_files(capsys, files, cmd, why):
    argv = cmd.format(dir=files["dir"], mp4=files["mp4"], mid=files["mid"], wav=files["wav"]).split()
    code, _, err = probe(capsys, argv, files)  # probe() asserts that nothing changed
    line = one_error_line(err)
    assert code == 1 and (("--overwrite" in line) if why == "overwrite" else ("input" in line))


UNWRITABLE = [
    pytest.param("video label {mp4} --out {ro}/labels.csv", marks=needs("video-classify")),
    pytest.param("music generate --out {ro}/song.mid --seconds 2", marks=needs("music")),
    pytest.param("explain --task adding --out {ro}/gates.png", marks=needs("adding-lstm")),
]


@pytest.mark.parametrize("cmd", UNWRITABLE)
def test_unwritable_output_folder_is_one_line(capsys, files, cmd):
    ro = "/proc/lstm-media-probe"  # read-only even for root
    code, _, err = probe(capsys, cmd.format(mp4=files["mp4"], ro=ro).split(), files)
    assert code == 1 and ro in one_error_line(err)


# --- good files next to bad ones are still processed, the bad ones counted ----------------------------------
@needs("kws")
def test_kws_predict_goes_on_past_a_bad_file(capsys, files):
    code, out, err = probe(capsys, ["kws", "predict", files["wav"], files["dir"] / "bad.wav", "--json"], files)
    import json

    preds = json.loads(out)["predictions"]
    assert code == 0 and [("label" in p) for p in preds] == [True, False]
    assert "bad.wav" in err


@needs("video-classify")
def test_video_label_goes_on_past_a_bad_clip(capsys, files):
    import json

    code, out, err = probe(capsys, ["video", "label", files["mp4"], files["dir"] / "bad.mp4", "--json"], files)
    res = json.loads(out)
    assert code == 0 and "bad.mp4" in err
    assert [r["path"] for r in res["labels"]] == [str(files["mp4"])] and res["skipped"] == 1


def test_music_stats_goes_on_past_a_bad_file(capsys, files):
    import json

    code, out, err = probe(capsys, ["music", "stats", files["dir"] / "midis", "--json"], files)
    assert code == 0 and "bad.mid" in err
    assert json.loads(out)["stats"][str(files["dir"] / "midis")]["n_files"] == 1  # the good file counted


# --- non-finite training never keeps a NaN model ----------------------------------------------------------
def test_non_finite_training_stops_with_one_line(capsys, tmp_path, music_corpus):
    from conftest import MUSIC_TINY

    out = tmp_path / "run"
    code = main(["music", "train", "--data", str(music_corpus), "--out", str(out), "--epochs", "2",
                 "--lr", "1e30", *MUSIC_TINY])
    err = capsys.readouterr().err
    line = one_error_line(err)
    assert code == 1 and "training stopped at step" in line and "learning rate" in line
    for name in ("best.pt", "last.pt"):
        if (out / name).exists():
            sd = torch.load(out / name, weights_only=True)["state_dict"]
            assert all(math.isfinite(float(v.float().abs().max())) for v in sd.values() if v.is_floating_point())
