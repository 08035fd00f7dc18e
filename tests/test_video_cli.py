"""scripts/video.py end to end on tiny rendered data: train, eval, label (clips and --segment), caption."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import video as cli  # noqa: E402

from pipelines.video.infer import read_srt  # noqa: E402
from pipelines.video.synth import ACTIONS, render_long_video, synthesize  # noqa: E402


def run(capsys, *argv):
    args = cli.get_args_parser().parse_args(list(argv))
    res = cli.main(args)
    return res, capsys.readouterr()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_cli")
    data = root / "clips"
    synthesize(data, (2, 1, 2), seed=1, codecs=("mjpg", "mp4v"), progress=False)
    return root, data


@pytest.fixture(scope="module")
def trained(setup):
    root, data = setup
    common = ["--data", str(data), "--frames", "4", "--size", "16", "--epochs", "1", "--json"]
    for task, out in (("classify", "cls"), ("caption", "cap")):
        args = cli.get_args_parser().parse_args(["train", "--task", task, "--out", str(root / out), *common])
        cli.main(args)
    return root, data


def test_train_writes_checkpoints(trained):
    root, _ = trained
    for run_dir in ("cls", "cap"):
        assert (root / run_dir / "best.pt").is_file() and (root / run_dir / "metrics.jsonl").is_file()


def test_eval_classify_json(trained, capsys):
    root, data = trained
    _, out = run(capsys, "eval", "--checkpoint", str(root / "cls/best.pt"), "--data", str(data), "--json")
    rep = json.loads(out.out)
    assert rep["n"] == 12 and 0.0 <= rep["accuracy"] <= 1.0 and set(rep["per_class"]) == set(ACTIONS)
    assert Path(rep["confusion_png"]).is_file() and sum(map(sum, rep["confusion"])) == 12


def test_eval_caption_json(trained, capsys):
    root, data = trained
    _, out = run(capsys, "eval", "--checkpoint", str(root / "cap/best.pt"), "--data", str(data), "--json")
    rep = json.loads(out.out)
    assert rep["n"] == 12 and {"bleu4", "cider", "exact_match"} <= set(rep)


def test_label_clips_skips_bad_files(trained, capsys, tmp_path):
    root, data = trained
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted((data / "grow").iterdir())[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    (folder / "empty.avi").write_bytes(b"")
    res, out = run(capsys, "label", "--checkpoint", str(root / "cls/best.pt"), str(folder), "--top-k", "3",
                   "--out", str(tmp_path / "labels.csv"))
    assert res["n"] == 2 and res["skipped"] == 2
    assert "broken.mp4" in out.err and "empty.avi" in out.err
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert len(rows) == 2 and all(r["label"] in ACTIONS and len(r["top_k"].split(";")) == 3 for r in rows)
    assert all(0 <= float(r["score"]) <= 1 for r in rows)


def test_label_segments_writes_srt(trained, capsys, tmp_path):
    root, _ = trained
    video = tmp_path / "long.avi"
    render_long_video(video, segments=3, seconds=1.0, fps=8, size=(48, 64), codec="mjpg")
    res, _ = run(capsys, "label", "--checkpoint", str(root / "cls/best.pt"), str(video), "--segment", "1",
                 "--out", str(tmp_path / "long.srt"))
    subs = read_srt(tmp_path / "long.srt")
    assert len(subs) == 3 == res["n"]
    assert [s[0] for s in subs] == [0.0, 1.0, 2.0] and all(s[2].split()[0] in ACTIONS for s in subs)


def test_caption_cli_and_json_stdout(trained, tmp_path):
    root, data = trained
    clip = sorted((data / "shrink").iterdir())[0]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/video.py"), "caption", "--checkpoint",
                           str(root / "cap/best.pt"), str(clip), str(bad), "--beam", "3", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert res["n"] == 1 and res["skipped"] == 1 and isinstance(res["captions"][0]["caption"], str)
    assert "bad.mp4" in proc.stderr


def test_wrong_checkpoint_kind_is_one_line_error(trained, capsys):
    root, _ = trained
    with pytest.raises(SystemExit):
        run(capsys, "caption", "--checkpoint", str(root / "cls/best.pt"), "x.mp4")
    err = capsys.readouterr().err
    assert err.startswith("error:") and "label" in err
