"""The ``lstm-media music`` command: bundles, resume, the shipped default, checked flags, outputs that never
destroy inputs, no metric on nothing, and exact mid-epoch resume with the carried TBPTT state."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pretty_midi
import pytest
import torch

from pipelines import bundle
from pipelines.checkpoint import load_checkpoint
from pipelines.music.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "music"
TINY = ["--hidden", "24", "--layers", "1", "--embed", "16", "--streams", "4", "--bptt", "32", "--device", "cpu",
        "--threads", "1"]


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def one_error_line(err: str) -> str:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_bundle_schema_and_info(music_run):
    b, _ = bundle.read(music_run / "best.pt", "music")
    assert b["kind"] == "music" and b["model"] == "music-lstm"
    assert b["model_config"]["hidden_size"] == 24 and b["model_config"]["vocab_size"] == len(b["vocab"])
    assert b["vocab"][:3] == ["PAD", "BOS", "EOS"] and b["front_end"]["time_unit"] == "beats"
    assert b["task"]["model"] == "music-lstm" and b["train"]["epochs"] == 2
    ex = b["extras"]
    assert ex["data_kind"] == "tokens" and len(ex["unigram_counts"]) == len(b["vocab"]) and ex["max_note_steps"] > 0
    assert b["data"]["n_train_files"] == 4 and "loss" in b["metrics"]["val"]
    model, b2 = bundle.load(music_run / "best.pt", "music")  # rebuilt through the registry from the bundle alone
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in b["state_dict"].values())


def test_cli_train_eval_generate(music_run, music_corpus, tmp_path, capsys):
    ck = str(music_run / "best.pt")
    assert main(["eval", "--checkpoint", ck, "--data", str(music_corpus), "--json", "--device", "cpu"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["n_files"] == 1 and ev["n_tokens"] > 100 and ev["unigram_nll_per_token"] > ev["nll_per_token"] * 0.5
    out = tmp_path / "gen" / "song.mid"
    assert main(["generate", "--checkpoint", ck, "--out", str(out), "--num", "2", "--seconds", "8", "--top-k", "20",
                 "--json", "--device", "cpu"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [Path(f["midi"]).name for f in files] == ["song_000.mid", "song_001.mid"]
    for f in files:
        pm = pretty_midi.PrettyMIDI(f["midi"])
        notes = [n for i in pm.instruments for n in i.notes]
        assert notes and all(n.end > n.start and 21 <= n.pitch <= 108 for n in notes)
        assert pm.get_end_time() <= 8.0 + 1e-6 and Path(f["png"]).stat().st_size > 1000
    assert not list((tmp_path / "gen").glob(".*"))  # no temp files left behind


def test_script_wrapper_runs_the_same_main(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "music.py"), "generate", "--seconds", "0"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "--seconds" in r.stderr and "Traceback" not in r.stderr


def test_wrong_kind_checkpoint_is_one_line(tmp_path, music_corpus, capsys):
    other = tmp_path / "kws.pt"
    bundle.save(bundle.complete(bundle.make_meta("kws", "kws-lstm", {}), {}), other)
    for argv in (["generate", "--checkpoint", str(other), "--out", str(tmp_path / "a.mid")],
                 ["eval", "--checkpoint", str(other), "--data", str(music_corpus)]):
        assert main(argv + ["--device", "cpu"]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert str(other) in line and "is a kws checkpoint" in line and "music checkpoint" in line
    assert not (tmp_path / "a.mid").exists()
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    assert main(["eval", "--checkpoint", str(text), "--data", str(music_corpus)]) == 1
    assert str(text) in one_error_line(capsys.readouterr().err)


def test_generate_without_checkpoint_uses_the_shipped_model(tmp_path, capsys):
    if bundle.shipped_path("music") is None:
        pytest.skip("pipelines/models/music.pt is not built (make models)")
    assert main(["generate", "--out", str(tmp_path / "song.mid"), "--seconds", "5", "--json", "--device", "cpu"]) == 0
    f = json.loads(capsys.readouterr().out)["files"][0]
    assert f["n_notes"] > 0 and f["seconds"] <= 5.0 + 1e-6
    b, _ = bundle.read("music", "music")
    held = b["metrics"]["held_out"]
    assert held["test_nll_per_token"] < held["test_unigram_nll_per_token"] and held["test_files"] > 0
    assert "trainer" not in b and b["extras"]["description"]


def test_second_train_resumes_and_changed_setting_stops(music_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(music_corpus), "--out", str(run), "--epochs", "1", *TINY]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert f"resuming from {run / 'last.pt'} at epoch 1" in capsys.readouterr().err
    assert main(args + ["--lr", "0.01"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "lr" in line and "--fresh" in line
    assert main(args + ["--lr", "0.01", "--fresh"]) == 0
    assert load_checkpoint(run / "last.pt")["train"]["lr"] == 0.01


BAD_FLAGS = [
    ["generate", "--out", "x.mid", "--seconds", v] for v in ("nan", "inf", "0", "-1", "1e9", "601")
] + [
    ["generate", "--out", "x.mid", "--temperature", v] for v in ("nan", "0", "-1")
] + [
    ["generate", "--out", "x.mid", "--top-p", "0"], ["generate", "--out", "x.mid", "--top-p", "1.5"],
    ["generate", "--out", "x.mid", "--top-k", "-1"], ["generate", "--out", "x.mid", "--num", "0"],
    ["generate", "--out", "x.mid", "--tokens", "0"], ["generate", "--out", "x.mid", "--threads", "0"],
    ["train", "--data", "d", "--out", "r", "--batch-size", "0"], ["train", "--data", "d", "--out", "r", "--hidden", "0"],
    ["train", "--data", "d", "--out", "r", "--epochs", "0"], ["train", "--data", "d", "--out", "r", "--lr", "nan"],
    ["train", "--data", "d", "--out", "r", "--lr", "0"], ["train", "--data", "d", "--out", "r", "--streams", "0"],
    ["train", "--data", "d", "--out", "r", "--dropout", "1"], ["train", "--data", "d", "--out", "r", "--model", "gru"],
    ["eval", "--data", "d", "--device", "tpu"], ["corpus", "--out", "c", "--limit", "0"],
]


@pytest.mark.parametrize("argv", BAD_FLAGS, ids=[" ".join(a[-2:]) for a in BAD_FLAGS])
def test_numeric_flag_bounds_are_usage_errors(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing created


def test_unknown_model_setting_is_one_line(music_corpus, tmp_path, capsys):
    assert main(["train", "--data", str(music_corpus), "--out", str(tmp_path / "r"), "--model", "pianoroll",
                 "--embed", "8"]) == 1
    assert "embed_size" in one_error_line(capsys.readouterr().err)


def test_outputs_never_destroy_inputs(music_run, tmp_path, capsys):
    ck = music_run / "best.pt"
    primer = tmp_path / "primer.mid"
    primer.write_bytes((DATA / "bwv286.mid").read_bytes())
    before = digest(primer), digest(ck)
    common = ["--checkpoint", str(ck), "--seconds", "16", "--device", "cpu"]
    assert main(["generate", *common, "--primer", str(primer), "--out", str(primer)]) == 1
    assert "input" in one_error_line(capsys.readouterr().err)
    assert main(["generate", *common, "--primer", str(primer), "--out", str(primer), "--overwrite"]) == 1
    capsys.readouterr()
    assert main(["generate", *common, "--out", str(ck), "--overwrite"]) == 1
    assert "input" in one_error_line(capsys.readouterr().err)
    assert (digest(primer), digest(ck)) == before
    # an existing file is kept unless --overwrite
    mine = tmp_path / "mine.mid"
    mine.write_bytes(b"my own file")
    assert main(["generate", *common, "--out", str(mine)]) == 1
    assert "--overwrite" in one_error_line(capsys.readouterr().err) and mine.read_bytes() == b"my own file"
    assert main(["generate", *common, "--out", str(mine), "--overwrite"]) == 0
    assert pretty_midi.PrettyMIDI(str(mine)).instruments


def test_out_folder_gets_numbered_files(music_run, tmp_path, capsys):
    folder = tmp_path / "gen"
    folder.mkdir()
    (folder / "keep.mid").write_bytes(b"x")
    argv = ["generate", "--checkpoint", str(music_run / "best.pt"), "--out", str(folder), "--seconds", "4",
            "--json", "--device", "cpu"]
    assert main(argv + ["--num", "2"]) == 0
    first = [Path(f["midi"]).name for f in json.loads(capsys.readouterr().out)["files"]]
    assert main(argv) == 0
    second = [Path(f["midi"]).name for f in json.loads(capsys.readouterr().out)["files"]]
    assert first == ["music_000.mid", "music_001.mid"] and second == ["music_002.mid"]
    assert (folder / "keep.mid").read_bytes() == b"x" and (folder / "music_002.png").is_file()


def test_eval_on_nothing_is_an_error(music_run, tmp_path, capsys):
    ck = str(music_run / "best.pt")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mid").write_text("not midi")
    (bad / "b.mid").write_bytes(b"")
    for split in ("test", "train", "valid"):
        (bad / f"{split}.txt").write_text("a.mid\nb.mid\n")
    assert main(["eval", "--checkpoint", ck, "--data", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "none of the 2 MIDI files is usable" in err.strip().splitlines()[-1] and "perplexity" not in err
    missing = tmp_path / "missing"
    assert main(["eval", "--checkpoint", ck, "--data", str(missing)]) == 1
    assert str(missing) in one_error_line(capsys.readouterr().err) and not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--checkpoint", ck, "--data", str(empty)]) == 1
    assert "no MIDI files" in one_error_line(capsys.readouterr().err)
    assert main(["stats", str(empty)]) == 1
    assert "no readable MIDI" in one_error_line(capsys.readouterr().err)


def test_mid_epoch_resume_with_carried_state_is_exact(music_corpus, tmp_path):
    """Stop inside an epoch, resume in a fresh Trainer: the weights equal an uninterrupted run's — and only
    because the carried TBPTT state was saved (dropping it from last.pt changes the result)."""
    from pipelines.music.train import MusicTrainConfig, train

    cfg = MusicTrainConfig(model_kwargs={"embed_size": 8, "hidden_size": 16, "num_layers": 2, "dropout": 0.1},
                           epochs=2, n_streams=4, bptt=64, max_transpose=2, progress=False, device="cpu")
    full = train(music_corpus, tmp_path / "full", cfg)
    spe = full["step"] // 2
    assert spe > 6
    part = train(music_corpus, tmp_path / "part", cfg, stop_after=5)  # inside epoch 1, state carried
    assert part["step"] == 5
    carry = load_checkpoint(tmp_path / "part" / "last.pt")["trainer"]["carry"]
    assert set(carry) == {"h", "c"} and carry["h"].shape == (2, 4, 16)
    cut = tmp_path / "cut"
    cut.mkdir()
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    ck["trainer"]["carry"] = {}  # the negative control: the same checkpoint without the carried state
    bundle.save(ck, cut / "last.pt")
    done = train(music_corpus, tmp_path / "part", cfg)
    assert done["step"] == full["step"]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    train(music_corpus, cut, cfg)
    c = load_checkpoint(cut / "last.pt")["state_dict"]
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 1e-5


def test_ship_quick(tmp_path):
    """The ship recipe's code path, tiny: corpus, training, held-out figures, fp16 bundle that loads."""
    pytest.importorskip("music21")
    from pipelines.music.ship import ship

    rows = ship(tmp_path / "work", tmp_path / "models", quick=True)
    (row,) = rows
    assert row["name"] == "music" and row["kind"] == "music" and row["size_bytes"] < 3 * 1024 * 1024
    held = row["held_out"]
    assert held["test_files"] > 0 and held["test_nll_per_token"] > 0 and held["test_unigram_nll_per_token"] > 0
    b, _ = bundle.read(tmp_path / "models" / "music.pt", "music")
    assert b["metrics"]["held_out"] == held and "trainer" not in b
    assert all(v.dtype == torch.float16 for v in b["state_dict"].values() if v.is_floating_point())
    model, _ = bundle.load(tmp_path / "models" / "music.pt", "music")
    assert next(model.parameters()).dtype == torch.float32
