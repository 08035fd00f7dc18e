"""``lstm-media video`` end to end on tiny rendered data: train (bundles, resume, config mismatch), eval,
label (clips and --segment), caption, shipped defaults, wrong-kind checkpoints, flag bounds, and outputs
that never replace inputs."""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import bundle
from pipelines.video.cli import main
from pipelines.video.infer import read_srt
from pipelines.video.synth import ACTIONS, render_long_video, synthesize

TINY = ["--frames", "4", "--size", "16", "--epochs", "1", "--threads", "1", "--device", "cpu"]


def run(capsys, *argv) -> tuple[int, object]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr()


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_cli")
    data = root / "clips"
    synthesize(data, (2, 1, 2), seed=1, codecs=("mjpg", "mp4v"), progress=False)
    for task, out in (("classify", "cls"), ("caption", "cap")):
        assert main(["train", "--task", task, "--data", str(data), "--out", str(root / out), *TINY, "--json"]) == 0
    return root, data


def test_train_writes_bundles(trained):
    root, _ = trained
    cls, _ = bundle.read(root / "cls/best.pt")
    assert cls["kind"] == "video-classify" and cls["model"] == "video-cnn-lstm" and cls["labels"] == list(ACTIONS)
    assert cls["model_config"]["num_classes"] == 6 and cls["front_end"]["num_frames"] == 4
    assert cls["task"]["epochs"] == 1 and "accuracy" in cls["metrics"]["val"] and "trainer" in cls
    cap, _ = bundle.read(root / "cap/best.pt")
    assert cap["kind"] == "video-caption" and cap["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert cap["model_config"]["vocab_size"] == len(cap["vocab"]) and "a" in cap["vocab"]
    model, _ = bundle.load(root / "cap/best.pt", "video-caption")
    assert isinstance(model, torch.nn.Module)


def test_second_train_resumes_and_changed_lr_stops(trained, capsys):
    root, data = trained
    code, out = run(capsys, "train", "--data", data, "--out", root / "cls", *TINY, "--json")
    assert code == 0 and f"resuming from {root / 'cls' / 'last.pt'}" in out.err
    before = digest(root / "cls/last.pt")
    code, out = run(capsys, "train", "--data", data, "--out", root / "cls", *TINY, "--lr", "0.01", "--json")
    line = one_error_line(out.err)
    assert code == 1 and "lr" in line and "--fresh" in line and out.out == ""
    assert digest(root / "cls/last.pt") == before


def test_eval_classify_json(trained, capsys):
    root, data = trained
    code, out = run(capsys, "eval", "--checkpoint", root / "cls/best.pt", "--data", data, "--json", "--threads", "1")
    rep = json.loads(out.out)
    assert code == 0 and rep["n"] == 12 and 0.0 <= rep["accuracy"] <= 1.0 and set(rep["per_class"]) == set(ACTIONS)
    assert Path(rep["confusion_png"]).is_file() and sum(map(sum, rep["confusion"])) == 12


def test_eval_caption_json(trained, capsys):
    root, data = trained
    code, out = run(capsys, "eval", "--checkpoint", root / "cap/best.pt", "--data", data, "--json", "--threads", "1",
                    "--no-meteor")
    rep = json.loads(out.out)
    assert code == 0 and rep["n"] == 12 and {"bleu4", "cider", "exact_match"} <= set(rep)


def test_eval_missing_data_creates_nothing(trained, capsys, tmp_path):
    root, _ = trained
    missing = tmp_path / "nope"
    code, out = run(capsys, "eval", "--checkpoint", root / "cls/best.pt", "--data", missing)
    assert code == 1 and str(missing) in one_error_line(out.err) and not missing.exists()


def test_eval_with_no_usable_clip_is_an_error(trained, capsys, tmp_path):
    root, _ = trained
    (tmp_path / "grow").mkdir()
    (tmp_path / "grow" / "broken.avi").write_bytes(b"not a video")
    code, out = run(capsys, "eval", "--checkpoint", root / "cls/best.pt", "--data", tmp_path, "--split", "all",
                    "--out", tmp_path / "report")
    assert code == 1 and "no usable" in one_error_line(out.err) and out.out == ""
    assert not (tmp_path / "report" / "confusion.png").exists()


def test_label_clips_skips_bad_files(trained, capsys, tmp_path):
    root, data = trained
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted((data / "grow").iterdir())[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    (folder / "empty.avi").write_bytes(b"")
    code, out = run(capsys, "label", "--checkpoint", root / "cls/best.pt", folder, "--top-k", "3",
                    "--out", tmp_path / "labels.csv", "--json")
    res = json.loads(out.out)
    assert code == 0 and res["n"] == 2 and res["skipped"] == 2
    assert "broken.mp4" in out.err and "empty.avi" in out.err
    rows = list(csv.DictReader(open(tmp_path / "labels.csv")))
    assert len(rows) == 2 and all(r["label"] in ACTIONS and len(r["top_k"].split(";")) == 3 for r in rows)
    assert all(0 <= float(r["score"]) <= 1 for r in rows)
    # an existing output is kept without --overwrite; an existing folder gets labels.csv inside
    code, out = run(capsys, "label", "--checkpoint", root / "cls/best.pt", folder, "--out", tmp_path / "labels.csv")
    assert code == 1 and "--overwrite" in one_error_line(out.err)
    (tmp_path / "outdir").mkdir()
    code, _ = run(capsys, "label", "--checkpoint", root / "cls/best.pt", folder, "--out", tmp_path / "outdir")
    assert code == 0 and len(list(csv.DictReader(open(tmp_path / "outdir" / "labels.csv")))) == 2


def test_label_segments_writes_srt_and_never_overwrites_one(trained, capsys, tmp_path):
    root, _ = trained
    video = tmp_path / "long.avi"
    render_long_video(video, segments=3, seconds=1.0, fps=8, size=(48, 64), codec="mjpg")
    code, out = run(capsys, "label", "--checkpoint", root / "cls/best.pt", video, "--segment", "1",
                    "--out", tmp_path / "out.srt", "--json")
    subs = read_srt(tmp_path / "out.srt")
    assert code == 0 and len(subs) == 3 == json.loads(out.out)["n"]
    assert [s[0] for s in subs] == [0.0, 1.0, 2.0] and all(s[2].split()[0] in ACTIONS for s in subs)
    # default: VIDEO.srt beside the video; one the user wrote stays untouched without --overwrite
    mine = tmp_path / "long.srt"
    mine.write_text("1\n00:00:00,000 --> 00:00:01,000\nmy own subtitle\n\n")
    code, out = run(capsys, "label", "--checkpoint", root / "cls/best.pt", video, "--segment", "1")
    assert code == 1 and str(mine) in one_error_line(out.err) and "my own subtitle" in mine.read_text()
    code, _ = run(capsys, "label", "--checkpoint", root / "cls/best.pt", video, "--segment", "1", "--overwrite")
    assert code == 0 and len(read_srt(mine)) == 3


@pytest.mark.parametrize("verb", ["label", "caption", "label-segment"])
def test_out_equal_to_an_input_video_is_refused(trained, capsys, tmp_path, verb):
    root, data = trained
    clip = tmp_path / "clip.avi"
    clip.write_bytes(sorted((data / "grow").glob("*.avi"))[0].read_bytes())
    before = digest(clip)
    ck = root / ("cap/best.pt" if verb == "caption" else "cls/best.pt")
    extra = ["--segment", "1"] if verb == "label-segment" else []
    code, out = run(capsys, verb.split("-")[0], "--checkpoint", ck, clip, "--out", clip, "--overwrite", *extra)
    assert code == 1 and "inputs" in one_error_line(out.err) and digest(clip) == before


def test_caption_cli_and_json_stdout(trained, tmp_path):
    root, data = trained
    clip = sorted((data / "shrink").iterdir())[0]
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "video", "caption", "--checkpoint",
                           str(root / "cap/best.pt"), str(clip), str(bad), "--beam", "3", "--json", "--threads", "1",
                           "--out", str(tmp_path / "caps.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert res["n"] == 1 and res["skipped"] == 1 and isinstance(res["captions"][0]["caption"], str)
    assert "bad.mp4" in proc.stderr and json.loads((tmp_path / "caps.json").read_text())["n"] == 1


def test_label_program_ends_lean_with_its_exit_code_outputs_and_atexit_handlers(trained, tmp_path):
    """``label``/``caption`` as a program leave through cli_common.lean_exit (no C++ library teardown):
    the exit code, stdout, the written file and Python's atexit handlers must all survive it."""
    root, _ = trained
    video = tmp_path / "long.avi"
    render_long_video(video, segments=2, seconds=1.0, fps=8, size=(48, 64), codec="mjpg")
    prog = ("import atexit, sys; atexit.register(lambda: print('atexit ran', file=sys.stderr)); "
            "from pipelines.cli import main; sys.argv = ['lstm-media'] + sys.argv[1:]; sys.exit(main())")
    args = [sys.executable, "-c", prog, "video", "label", "--checkpoint", str(root / "cls/best.pt"), "--threads", "1"]
    ok = subprocess.run(args + [str(video), "--segment", "1", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["n"] == 2 and "atexit ran" in ok.stderr, ok.stderr
    assert len(read_srt(tmp_path / "long.srt")) == 2
    bad = subprocess.run(args + [str(tmp_path / "missing.mp4")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "atexit ran" in bad.stderr
    assert one_error_line(bad.stderr.replace("atexit ran", "")).startswith("error: no decodable video")


def test_wrong_kind_checkpoints_are_one_line(trained, capsys, tmp_path):
    root, _ = trained
    clip = sorted((trained[1] / "grow").iterdir())[0]
    code, out = run(capsys, "label", "--checkpoint", root / "cap/best.pt", clip)
    assert code == 1 and one_error_line(out.err) == (
        f"error: {root / 'cap/best.pt'} is a video-caption checkpoint; 'lstm-media video label' needs a "
        "video-classify checkpoint")
    code, out = run(capsys, "caption", "--checkpoint", root / "cls/best.pt", clip)
    assert code == 1 and "is a video-classify checkpoint" in one_error_line(out.err)
    music = tmp_path / "music.pt"
    bundle.save(bundle.complete(bundle.make_meta("music", "music-lstm", {}), {}), music)
    for verb in ("label", "caption"):
        code, out = run(capsys, verb, "--checkpoint", music, clip)
        line = one_error_line(out.err)
        assert code == 1 and "is a music checkpoint" in line and "video-" in line


@pytest.mark.parametrize("verb,name", [("label", "video-classify"), ("caption", "video-caption")])
def test_inference_defaults_to_the_shipped_model(trained, capsys, verb, name):
    if bundle.shipped_path(name) is None:
        pytest.skip(f"pipelines/models/{name}.pt is not built (make models)")
    _, data = trained
    code, out = run(capsys, verb, sorted((data / "grow").iterdir())[0], "--json", "--threads", "1")
    res = json.loads(out.out)
    assert code == 0 and res["n"] == 1 and Path(res["checkpoint"]).name == f"{name}.pt"


@pytest.mark.parametrize("argv", [
    ["train", "--data", "d", "--out", "o", "--epochs", "0"],
    ["train", "--data", "d", "--out", "o", "--batch-size", "0"],
    ["train", "--data", "d", "--out", "o", "--lr", "nan"],
    ["train", "--data", "d", "--out", "o", "--frames", "0"],
    ["label", "x.mp4", "--top-k", "0"],
    ["label", "x.mp4", "--segment", "0"],
    ["label", "x.mp4", "--segment", "1e9"],
    ["label", "x.mp4", "--threads", "0"],
    ["caption", "x.mp4", "--beam", "0"],
    ["eval", "--data", "d", "--beam", "-1"],
    ["synth", "--train", "-1"],
    ["synth", "--codecs", "divx"],
    ["synth", "--style", "unseen:colour"],
    ["train", "--data", "d", "--out", "o", "--speed-augment", "1.5"],
    ["train", "--data", "d", "--out", "o", "--zoom-augment", "1.3,0.8"],
    ["train", "--data", "d", "--out", "o", "--cnn-channels", "8,0"],
    ["train", "--data", "d", "--out", "o", "--bow-weight", "-1"],
], ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_numeric_flag_bounds_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_caption_recipe_flags_reach_the_bundle_and_are_caption_only(trained, capsys, tmp_path):
    root, data = trained
    code, out = run(capsys, "train", "--task", "classify", "--data", data, "--out", tmp_path / "cls",
                    "--speed-augment", "0.5", *TINY)
    assert code == 1 and "--speed-augment" in one_error_line(out.err) and not (tmp_path / "cls").exists()
    code, _ = run(capsys, "train", "--task", "caption", "--data", data, "--out", tmp_path / "cap", "--cnn-channels",
                  "4,8,8", "--speed-augment", "1", "--zoom-augment", "0.8,1.25", "--bow-weight", "0.5", *TINY)
    b, _ = bundle.read(tmp_path / "cap" / "best.pt", "video-caption")
    assert code == 0 and b["model_config"]["frame_cnn"]["channels"] == [4, 8, 8]
    assert (b["task"]["speed_augment"], list(b["task"]["zoom_augment"]), b["task"]["bow_weight"]) == (1.0, [0.8, 1.25],
                                                                                                       0.5)
    # the captioner's defaults are the recipe's (CAPTION_RECIPE); the module fixture trained with --size 16
    from pipelines.video.train import CAPTION_RECIPE

    d, _ = bundle.read(root / "cap" / "best.pt", "video-caption")
    assert d["task"]["speed_augment"] == CAPTION_RECIPE["speed_augment"] and d["task"]["epochs"] == 1
    # below the recipe's 64 px the CNN keeps its default widths; its pooling is the recipe's at any size
    assert d["model_config"]["frame_cnn"] == {"pool_mean": CAPTION_RECIPE["pool_mean"]}
    from pipelines.video.train import caption_augmentation

    assert all(d["task"][k] == (list(v) if isinstance(v, tuple) else v) for k, v in caption_augmentation().items())


def test_scale_augment_flag_reaches_the_bundle_and_is_checked(trained, capsys, tmp_path):
    root, data = trained
    code, _ = run(capsys, "train", "--task", "caption", "--data", data, "--out", tmp_path / "cap",
                  "--scale-augment", "0.7,1.3,0.25", *TINY)
    b, _ = bundle.read(tmp_path / "cap" / "best.pt", "video-caption")
    assert code == 0 and (list(b["task"]["scale_augment"]), b["task"]["scale_p"]) == ([0.7, 1.3], 0.25)
    code, _ = run(capsys, "train", "--task", "caption", "--data", data, "--out", tmp_path / "off",
                  "--scale-augment", "1,1", *TINY)
    assert code == 0 and bundle.read(tmp_path / "off" / "best.pt", "video-caption")[0]["task"]["scale_augment"] is None
    code, out = run(capsys, "train", "--task", "classify", "--data", data, "--out", tmp_path / "cls",
                    "--scale-augment", "0.8,1.25", *TINY)
    assert code == 1 and "--scale-augment" in one_error_line(out.err)
    for bad in ("0.8", "1.3,0.8", "0.8,1.25,2", "a,b"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--task", "caption", "--data", str(data), "--out", str(tmp_path / "x"),
                  "--scale-augment", bad])
        assert e.value.code == 2


def test_unknown_model_is_one_line(trained, capsys, tmp_path):
    _, data = trained
    code, out = run(capsys, "train", "--data", data, "--out", tmp_path / "run", "--model", "video-caption", *TINY)
    assert code == 1 and "--model video-caption" in one_error_line(out.err) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", ["binary train list", "duplicate classes", "huge caption field"])
def test_bad_layout_files_are_one_line_naming_the_file(capsys, tmp_path, bad):
    data = tmp_path / "clips"
    synthesize(data, (1, 1, 0), seed=2, codecs=("mjpg",), progress=False)
    if bad == "binary train list":
        victim = data / "train.txt"
        victim.write_bytes(bytes(range(256)))
    elif bad == "duplicate classes":
        victim = data / "classes.txt"
        victim.write_text("1 grow\n2 grow\n")
    else:
        victim = data / "captions.csv"
        victim.write_text(f"path,caption\ngrow/x.avi,{'w' * 500_000}\n")
    code, out = run(capsys, "train", "--task", "caption", "--data", data, "--out", tmp_path / "run", *TINY)
    assert code == 1 and str(victim) in one_error_line(out.err) and not (tmp_path / "run").exists()


def test_no_data_worker_unless_asked(monkeypatch):
    """None by default, whatever the threads and cores (measured: a worker interrupted the model's threads,
    and beside a free core it gained nothing); --workers wins."""
    from pipelines.video.train import video_workers

    threads = torch.get_num_threads()
    try:
        for n, cores in ((2, 2), (1, 2), (2, 8)):
            torch.set_num_threads(n)
            monkeypatch.setattr("os.cpu_count", lambda: cores)
            assert video_workers() == 0 and video_workers(1) == 1 and video_workers(3) == 3
    finally:
        torch.set_num_threads(threads)


def test_data_worker_trains_the_same_model(trained, capsys, tmp_path):
    """--workers moves the clips' augmentation (rescaling, flips, speed) to a low-priority process kept for the
    run; the items, hence the weights after two epochs, stay the same."""
    import torch

    root, data = trained
    states = []
    for w in ("0", "1"):
        code, _ = run(capsys, "train", "--task", "caption", "--data", data, "--out", tmp_path / w, "--workers", w,
                      *TINY[:4], "--epochs", "2", *TINY[6:])
        assert code == 0
        states.append(bundle.read(tmp_path / w / "last.pt")[0]["state_dict"])
    assert states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])
