"""Music you can hear (``lstm-media music render``, ``generate --audio``) and the generation controls
(``--primer-pitches``, ``--tempo``, ``--program``); the pipeline reads MIDI through symusic with unchanged tokens."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from pipelines.music import render as render_mod
from pipelines.music.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "music"
SR = 22050
HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and render_mod.find_soundfont() is not None


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def onset_agreement(audio_path: Path, pm) -> dict:
    """How the audio's onset strength follows the MIDI's note starts: ``ratio`` (mean onset strength within
    60 ms of a note start / elsewhere), ``precision`` (detected onsets within 70 ms of a note start) and
    ``recall`` (distinct note starts with a detected onset within 70 ms)."""
    import librosa

    y, sr = sf.read(str(audio_path), dtype="float32", always_2d=True)
    y = y.mean(1)
    hop = 512
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop)
    t = librosa.frames_to_time(np.arange(len(env)), sr=sr, hop_length=hop)
    starts = np.unique(np.round([n.start for i in pm.instruments for n in i.notes], 3))
    near = np.min(np.abs(t[:, None] - starts[None]), 1) < 0.06
    on = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=hop, units="time")
    return {"ratio": float(env[near].mean() / env[~near].mean()),
            "precision": float((np.min(np.abs(on[:, None] - starts[None]), 1) < 0.07).mean()),
            "recall": float((np.min(np.abs(starts[:, None] - on[None]), 1) < 0.07).mean())}


ENGINES = [pytest.param("fluidsynth", marks=pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="fluidsynth not installed")),
           "pretty_midi"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_render_duration_sound_and_onsets(engine, suffix, tmp_path, capsys):
    src = DATA / "bwv269.mid"
    out = tmp_path / f"bwv269{suffix}"
    assert main(["render", str(src), str(out), "--engine", engine, "--sample-rate", str(SR), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"] == engine and res["speed"] > 1  # faster than real time
    info = sf.info(str(out))
    assert info.format == suffix[1:].upper() and info.samplerate == SR
    pm = pretty_midi.PrettyMIDI(str(src))
    assert abs(info.duration - pm.get_end_time()) <= 1.0
    y, _ = sf.read(str(out), dtype="float32", always_2d=True)
    assert np.sqrt((y ** 2).mean()) > 0.02  # not silent
    agree = onset_agreement(out, pm)
    assert agree["ratio"] > 2 and agree["precision"] > 0.85 and agree["recall"] > 0.85, agree
    # the same notes 180 ms later (off the sixteenth-note grid) do not pass: the measure can fail
    shifted = pretty_midi.PrettyMIDI(str(src))
    for inst in shifted.instruments:
        for n in inst.notes:
            n.start, n.end = n.start + 0.18, n.end + 0.18
    off = onset_agreement(out, shifted)
    assert off["ratio"] < 1 and off["recall"] < 0.3, off


def test_fallback_without_fluidsynth_warns_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(render_mod.shutil, "which", lambda name: None)
    out = tmp_path / "x.wav"
    assert main(["render", str(DATA / "bwv286.mid"), str(out), "--sample-rate", str(SR)]) == 0
    cap = capsys.readouterr()
    warn = [l for l in cap.err.splitlines() if l.strip()]
    assert len(warn) == 1 and warn[0].startswith("warning:") and "fluidsynth" in warn[0]
    assert "pretty_midi" in cap.out and sf.info(str(out)).duration > 1
    assert main(["render", str(DATA / "bwv286.mid"), str(tmp_path / "y.wav"), "--engine", "fluidsynth"]) == 1
    assert "fluidsynth" in capsys.readouterr().err


def test_render_refuses_bad_outputs(tmp_path, capsys):
    src = tmp_path / "in.wav"  # a MIDI file with an audio suffix: the one way an output could be the input
    src.write_bytes((DATA / "bwv286.mid").read_bytes())
    before = digest(src)
    assert main(["render", str(src), str(src)]) == 1
    assert "inputs" in capsys.readouterr().err and digest(src) == before
    out = tmp_path / "o.wav"
    out.write_bytes(b"keep")
    assert main(["render", str(src), str(out)]) == 1
    assert "exists" in capsys.readouterr().err and out.read_bytes() == b"keep"
    assert main(["render", str(src), str(tmp_path / "o.mp3")]) == 1
    assert ".wav or .flac" in capsys.readouterr().err and not (tmp_path / "o.mp3").exists()
    assert main(["render", str(DATA / "README.md"), str(tmp_path / "r.wav")]) == 1
    assert "not a MIDI file" in capsys.readouterr().err and not (tmp_path / "r.wav").exists()
    for bad in (["--sample-rate", "100"], ["--engine", "timidity"]):
        with pytest.raises(SystemExit) as e:
            main(["render", str(src), str(tmp_path / "z.wav"), *bad])
        assert e.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "o.wav"]  # no temp files left


def test_generate_controls_and_audio(music_run, tmp_path, capsys):
    ck = str(music_run / "best.pt")
    out = tmp_path / "gen" / "song.mid"
    assert main(["generate", "--checkpoint", ck, "--out", str(out), "--num", "2", "--seconds", "6",
                 "--primer-pitches", "60", "64", "67", "--tempo", "90", "--program", "19", "--audio", "flac",
                 "--sample-rate", str(SR), "--json", "--device", "cpu", "--threads", "1"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert len(files) == 2
    for f in files:
        pm = pretty_midi.PrettyMIDI(f["midi"])
        _, bpm = pm.get_tempo_changes()
        assert abs(bpm[0] - 90) < 0.01 and {i.program for i in pm.instruments} == {19}
        first = sorted((round(n.start, 3), n.pitch) for i in pm.instruments for n in i.notes)[:3]
        assert first == [(0.0, 60), (0.0, 64), (0.0, 67)]  # the primer chord opens the piece
        assert pm.get_end_time() <= 6.0 + 1e-6
        audio = Path(f["audio"])
        assert audio == Path(f["midi"]).with_suffix(".flac") and abs(sf.info(str(audio)).duration - pm.get_end_time()) <= 1
    # a second run refuses to replace the audio too (nothing is written before the check)
    (tmp_path / "g2").mkdir()
    keep = tmp_path / "g2" / "a.wav"
    keep.write_bytes(b"keep")
    assert main(["generate", "--checkpoint", ck, "--out", str(tmp_path / "g2" / "a.mid"), "--seconds", "2",
                 "--audio", "wav", "--device", "cpu"]) == 1
    assert "exists" in capsys.readouterr().err and keep.read_bytes() == b"keep"
    assert not (tmp_path / "g2" / "a.mid").exists()


def test_generate_control_flags_checked(music_run, tmp_path, capsys):
    ck = str(music_run / "best.pt")
    base = ["generate", "--checkpoint", ck, "--out", str(tmp_path / "a.mid"), "--seconds", "2", "--device", "cpu"]
    for bad in (["--tempo", "0"], ["--tempo", "nan"], ["--program", "128"], ["--primer-pitches", "200"],
                ["--primer-pitches"], ["--audio", "mp3"], ["--primer", str(DATA / "bwv286.mid"), "--primer-pitches", "60"]):
        with pytest.raises(SystemExit) as e:
            main(base + bad)
        assert e.value.code == 2, bad
    assert main(base + ["--primer-pitches", "10"]) == 1  # a MIDI pitch, but outside the model's range
    assert "pitch range" in capsys.readouterr().err and not (tmp_path / "a.mid").exists()


def test_pipeline_reader_gives_todays_tokens():
    """The pipeline reads through symusic now; the token sequences are those of the pretty_midi path."""
    from encoders.io.midi import read_midi
    from encoders.midi import CHORALE, PERFORMANCE, MidiVocab, encode_notes, midi_to_notes
    from pipelines.music.data import load_token_pieces

    files = sorted(DATA.glob("*.mid"))
    for cfg in (CHORALE, PERFORMANCE):
        vocab = MidiVocab(cfg)
        pieces, names = load_token_pieces(files, vocab, progress=False)
        assert names == [str(f) for f in files]
        for p, f in zip(pieces, files):
            assert p.tolist() == encode_notes(midi_to_notes(read_midi(f), cfg), vocab, bos_eos=True)
