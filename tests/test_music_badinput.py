"""Bad MIDI input: one-line errors naming the file, documented clean-ups, batch commands skip and count."""
import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from encoders.io import DecodeError, SkipCounter
from encoders.io.midi import read_midi
from encoders.midi import CHORALE, PERFORMANCE, MidiVocab, decode_tokens, midi_to_notes, midi_to_tokens
from pipelines.music.data import load_token_pieces
from pipelines.music.stats import stats_of_paths

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "music"


def write_pm(path, notes=(), drums=(), tempo=120.0):
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    if notes:
        inst = pretty_midi.Instrument(0)
        inst.notes = [pretty_midi.Note(80, p, s, e) for p, s, e in notes]
        pm.instruments.append(inst)
    if drums:
        d = pretty_midi.Instrument(0, is_drum=True)
        d.notes = [pretty_midi.Note(100, p, s, e) for p, s, e in drums]
        pm.instruments.append(d)
    pm.write(str(path))
    return path


@pytest.fixture
def bad_files(tmp_path):
    good = (DATA / "bwv269.mid").read_bytes()
    files = {
        "corrupt": tmp_path / "corrupt.mid", "text": tmp_path / "text.mid", "empty": tmp_path / "empty.mid",
        "drums": tmp_path / "drums.mid", "tempo": tmp_path / "tempo.mid", "zero": tmp_path / "zero.mid",
    }
    files["corrupt"].write_bytes(good[:200])  # truncated inside the first track
    files["text"].write_text("this is not MIDI\n")
    write_pm(files["empty"])
    write_pm(files["drums"], drums=[(36, 0, 0.5), (38, 0.5, 1.0)])
    write_pm(files["tempo"], notes=[(60, 0, 1)], tempo=5000.0)
    files["zero"].write_bytes(b"")
    return files


@pytest.mark.parametrize("kind,reason", [("corrupt", "corrupt MIDI"), ("text", "not a MIDI file"),
                                         ("empty", "no notes"), ("drums", "only drum"), ("tempo", "absurd tempo"),
                                         ("zero", "not a MIDI file")])
def test_bad_files_raise_one_line_naming_the_file(bad_files, kind, reason):
    with pytest.raises(DecodeError) as e:
        read_midi(bad_files[kind])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(bad_files[kind])) and reason in msg
    with pytest.raises(DecodeError, match="no such file"):
        read_midi(bad_files[kind].with_name("missing.mid"))


def test_notes_past_the_range_are_dropped_and_drums_ignored(tmp_path):
    f = write_pm(tmp_path / "wide.mid", notes=[(10, 0, 0.5), (60, 0, 0.5), (115, 0.5, 1.0)], drums=[(36, 0, 1)])
    vocab = MidiVocab(CHORALE)  # piano range 21..108
    notes = decode_tokens(midi_to_tokens(read_midi(f), vocab), vocab)
    assert [n.pitch for n in notes] == [60]
    assert sorted(n.pitch for n in midi_to_notes(read_midi(f), PERFORMANCE)) == [10, 60, 115]


def test_overlapping_same_pitch_notes_are_merged(tmp_path):
    # in memory: a MIDI file cannot even store these unambiguously (its note-offs pair by pitch)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, p, s, e) for p, s, e in [(60, 0.0, 1.0), (60, 0.5, 0.75), (60, 0.5, 2.0),
                                                                 (62, 0, 0.1)]]
    pm.instruments.append(inst)
    notes = midi_to_notes(pm, PERFORMANCE)
    # a re-strike ends the sounding note; the identical onsets become one note lasting to the later end
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0, 50), (62, 0, 10), (60, 50, 200)]
    # the same from a file: whatever pairing the file's note-offs give, the result is clean
    f = write_pm(tmp_path / "overlap.mid", notes=[(60, 0.0, 1.0), (60, 0.5, 0.75), (60, 0.5, 2.0)])
    notes = midi_to_notes(read_midi(f), PERFORMANCE)
    assert [n.start for n in notes] == [0, 50] and notes[0].end == 50


def test_decoding_any_token_sequence_leaves_no_stuck_notes():
    vocab = MidiVocab(PERFORMANCE)
    g = np.random.default_rng(0)
    for _ in range(20):
        ids = g.integers(0, vocab.size, 300).tolist()
        notes, end = decode_tokens(ids, vocab, return_end=True)
        assert all(n.start < n.end <= end for n in notes)
        keys = {}
        for n in notes:  # no two notes of one pitch overlap
            for m in keys.get(n.pitch, []):
                assert n.start >= m.end or m.start >= n.end
            keys.setdefault(n.pitch, []).append(n)


def test_batch_loading_skips_and_counts_bad_files(bad_files, capsys):
    skips = SkipCounter()
    files = [DATA / "bwv269.mid", *bad_files.values(), DATA / "bwv347.mid"]
    pieces, names = load_token_pieces(files, MidiVocab(CHORALE), skips, progress=False)
    assert len(pieces) == 2 and len(skips) == len(bad_files)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(bad_files) and all(any(str(f) in line for line in err) for f in bad_files.values())
    s = stats_of_paths([bad_files["corrupt"].parent, DATA / "bwv269.mid"], progress=False)
    assert s["n_files"] == 1 and s["skipped"] == len(bad_files)


def test_cli_stats_skips_bad_files_and_errors_are_one_line(bad_files, capsys):
    from pipelines.music.cli import main

    folder = bad_files["corrupt"].parent
    (folder / "good.mid").write_bytes((DATA / "bwv269.mid").read_bytes())
    assert main(["stats", str(folder), str(DATA), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stats"][str(folder)]["n_files"] == 1 and out["stats"][str(folder)]["skipped"] == len(bad_files)
    assert out["stats"][str(DATA)]["n_files"] == 5
    assert set(out["distance_to_first"][str(DATA)]) >= {"pitch_class_l1", "note_density_rel", "polyphony_abs"}
    # a checkpoint that is not one: one line naming it, exit 1
    assert main(["eval", "--checkpoint", str(bad_files["text"]), "--data", str(DATA)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(bad_files["text"]) in err[0]


def test_primer_longer_than_request_or_empty(music_run, tmp_path, bad_files, capsys):
    from pipelines.cli_common import UserError
    from pipelines.music.inference import generate_files

    ck = music_run / "best.pt"
    with pytest.raises(UserError, match="primer is .* tokens, not shorter than the requested 50"):
        generate_files(ck, tmp_path / "a.mid", tokens=50, primer=DATA / "bwv269.mid")
    with pytest.raises(UserError, match="primer lasts 42.0 s"):
        generate_files(ck, tmp_path / "a.mid", seconds=10, primer=DATA / "bwv269.mid")
    res = generate_files(ck, tmp_path / "b.mid", tokens=40, primer=bad_files["empty"])  # empty: ignored, said so
    assert "primer has no notes" in capsys.readouterr().err and Path(res[0]["midi"]).is_file()
    with pytest.raises(DecodeError):
        generate_files(ck, tmp_path / "c.mid", tokens=40, primer=bad_files["corrupt"])
    # a short primer is kept verbatim at the start
    res = generate_files(ck, tmp_path / "d.mid", seconds=16, primer=DATA / "bwv286.mid", seed=1)  # primer: 12 s
    prim = midi_to_notes(read_midi(DATA / "bwv286.mid"), CHORALE)
    got = midi_to_notes(read_midi(res[0]["midi"]), CHORALE)
    last_onset = max(n.start for n in prim)
    assert [n for n in got if n.start < last_onset] == [n for n in prim if n.start < last_onset]


def test_folk_tunes_through_abc2midi_and_split_lists(tmp_path):
    import shutil

    from pipelines.music.corpus import SPLITS, build_folk, corpus_files, split_of

    if shutil.which("abc2midi") is None:
        pytest.skip("abc2midi not installed (make test installs it)")
    abc = tmp_path / "tunes.abc"
    abc.write_text("X:1\nT:One\nM:4/4\nL:1/8\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA|\n\n"
                   "X:2\nT:Two\nM:6/8\nL:1/8\nK:D\nFAA dAA|BAF E2D|\n\n"
                   "X:3\nT:Broken\nK:\n")
    (tmp_path / "junk.abc").write_text("not abc at all")
    res = build_folk(tmp_path / "corpus", progress=False, abc_files=[abc, tmp_path / "junk.abc"])
    mids = sorted((tmp_path / "corpus" / "folk").glob("*.mid"))
    assert res["written"] == len(mids) >= 2 and len(res["failed"]) == 1 and "junk.abc" in res["failed"][0]
    notes = [midi_to_notes(read_midi(m), CHORALE) for m in mids[:2]]
    assert all(len(n) >= 6 for n in notes)
    lists = {s: corpus_files(tmp_path / "corpus", s) for s in SPLITS}
    assert sorted(f for v in lists.values() for f in v) == mids
    for s, fs in lists.items():
        assert all(split_of(f.relative_to(tmp_path / "corpus").as_posix()) == s for f in fs)


def test_forgotten_note_off_is_capped_at_max_note_steps():
    vocab = MidiVocab(CHORALE)
    ids = [vocab.note_on(60), vocab.note_on(64), vocab.shift(4), vocab.note_off(64)] + [vocab.shift(16)] * 4
    notes = decode_tokens(ids, vocab)  # 60 never ends: closed at the end of the piece
    assert [(n.pitch, n.start, n.end) for n in notes] == [(60, 0, 68), (64, 0, 4)]
    capped = decode_tokens(ids, vocab, max_note_steps=12)
    assert [(n.pitch, n.start, n.end) for n in capped] == [(60, 0, 12), (64, 0, 4)]


def test_stats_of_a_transposed_piece_match_in_c(tmp_path):
    from pipelines.music.stats import distance, midi_stats

    pm = read_midi(DATA / "bwv269.mid")  # G major
    up = pretty_midi.PrettyMIDI(str(DATA / "bwv269.mid"))
    for inst in up.instruments:
        for n in inst.notes:
            n.pitch += 3
    a, b = midi_stats(pm), midi_stats(up)
    assert a["key"] == [7, "major"] and b["key"] == [10, "major"]
    assert a["polyphony"] == pytest.approx(b["polyphony"]) and 3.0 < a["polyphony"] <= 4.5
    assert b["pitch_mean"] == pytest.approx(a["pitch_mean"] + 3)
    from pipelines.music.stats import aggregate
    d = distance(aggregate([a]), aggregate([b]))
    assert d["pitch_class_in_c_l1"] == pytest.approx(0.0, abs=1e-12) and d["pitch_class_l1"] > 0.3
    assert d["note_density_rel"] == pytest.approx(0.0, abs=1e-12) and d["pitch_mean_abs"] == pytest.approx(3.0)
