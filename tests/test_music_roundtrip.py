"""MIDI → tokens → MIDI on real chorale files: same notes, pitches, onsets and offsets within one step."""
import dataclasses
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from encoders.io.midi import read_midi, write_midi
from encoders.midi import (CHORALE, PERFORMANCE, MidiVocab, Note, clean_notes, decode_tokens, encode_notes,
                           estimate_key, midi_to_notes, midi_to_tokens, pianoroll, quantize, shift_to_c,
                           tokens_to_midi, transpose_notes, transpose_range, transpose_tokens)

DATA = Path(__file__).parent / "data" / "music"
FILES = sorted(DATA.glob("*.mid"))
KEYS = {"bwv269": (7, "major"), "bwv347": (9, "major"), "bwv153.1": (9, "minor"), "bwv323": (6, "minor"),
        "bwv286": (9, "minor")}  # music21's analysis, see tests/data/music/README.md


def original_notes(pm):
    return [n for inst in pm.instruments for n in inst.notes]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
@pytest.mark.parametrize("cfg", [CHORALE, PERFORMANCE], ids=["beats", "seconds"])
def test_roundtrip_on_real_chorales(path, cfg, tmp_path):
    assert len(FILES) >= 4
    vocab = MidiVocab(cfg)
    pm = read_midi(path)
    ids = midi_to_tokens(pm, vocab, bos_eos=True)
    assert ids[0] == vocab.BOS and ids[-1] == vocab.EOS
    # through a real file, as a user would
    out = write_midi(tokens_to_midi(ids, vocab), tmp_path / "rt.mid")
    back = pretty_midi.PrettyMIDI(str(out))
    decoded = midi_to_notes(back, cfg)
    assert decoded == midi_to_notes(pm, cfg) == decode_tokens(ids, vocab)
    # against the original notes: every note's pitch and onset survive within one step, and the offsets
    # of notes not merged with an overlapping same-pitch note (unisons between voices) too
    step = cfg.seconds_per_step
    orig = original_notes(pm)
    by_pitch = {}
    for n in back.instruments[0].notes:
        by_pitch.setdefault(n.pitch, []).append(n)
    for n in orig:
        # chorales are written at 120 bpm by music21, so the beat grid is also a grid in seconds
        match = [m for m in by_pitch.get(n.pitch, []) if abs(m.start - n.start) <= step + 1e-6]
        assert match, (n.pitch, n.start)
    overlapped = set()
    for a in orig:
        for b in orig:
            if a is not b and a.pitch == b.pitch and a.start < b.end and b.start < a.end:
                overlapped.add(id(a))
    for n in orig:
        if id(n) in overlapped:
            continue
        m = [m for m in by_pitch[n.pitch] if abs(m.start - n.start) <= step + 1e-6]
        assert any(abs(x.end - n.end) <= step + 1e-6 for x in m), (n.pitch, n.start, n.end)
    assert len(decoded) >= 0.95 * len(orig)  # only unison duplicates are merged


def test_velocities_and_programs_roundtrip():
    pm = pretty_midi.PrettyMIDI()
    for prog, base in ((0, 60), (40, 72)):
        inst = pretty_midi.Instrument(program=prog)
        for k in range(6):
            inst.notes.append(pretty_midi.Note(velocity=20 + 17 * k, pitch=base + k, start=0.25 * k,
                                               end=0.25 * k + 0.4 + 0.013 * k))
        pm.instruments.append(inst)
    cfg = dataclasses.replace(PERFORMANCE, programs=True)
    vocab = MidiVocab(cfg)
    ids = midi_to_tokens(pm, vocab)
    notes = decode_tokens(ids, vocab)
    assert notes == midi_to_notes(pm, cfg)
    assert {n.program for n in notes} == {0, 40}
    orig = sorted((n.pitch, n.velocity, n.start) for i in pm.instruments for n in i.notes)
    got = sorted((n.pitch, n.velocity, n.start * 0.01) for n in notes)
    for (p, v, s), (p2, v2, s2) in zip(orig, got):
        assert p == p2 and abs(s - s2) < 0.006 and abs(v - v2) <= 127 / 32 / 2 + 1  # within half a bin
    back = tokens_to_midi(ids, vocab)
    assert sorted(i.program for i in back.instruments) == [0, 40]


def test_long_gaps_use_several_time_shifts():
    vocab = MidiVocab(CHORALE)
    notes = [Note(0, 4, 60, 80), Note(100, 104, 62, 80)]  # 96 steps of silence: 6 shifts of 16
    ids = encode_notes(notes, vocab)
    names = vocab.decode_names(ids)
    assert names.count("TIME_SHIFT_16") == 6
    assert decode_tokens(ids, vocab) == [n._replace(velocity=80) for n in notes]


@pytest.mark.parametrize("path", FILES[:2], ids=[f.stem for f in FILES[:2]])
def test_transposition_of_tokens_equals_transposed_notes(path):
    vocab = MidiVocab(CHORALE)
    notes = midi_to_notes(read_midi(path), CHORALE)
    ids = np.array(encode_notes(notes, vocab))
    lo, hi = transpose_range(ids, vocab)
    pitches = [n.pitch for n in notes]
    assert min(pitches) + lo == 21 and max(pitches) + hi == 108
    for k in (-5, 3, lo, hi):
        assert decode_tokens(transpose_tokens(ids, vocab, k), vocab) == transpose_notes(notes, k)
    assert transpose_tokens(ids, vocab, hi + 1) is None
    with pytest.raises(ValueError):
        transpose_notes(notes, lo - 1)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_key_estimate_matches_music21(path):
    notes = midi_to_notes(read_midi(path), CHORALE)
    assert estimate_key(notes) == KEYS[path.stem]


def test_pianoroll_samples_sounding_pitches():
    notes = [Note(0, 8, 60, 80), Note(4, 6, 64, 80), Note(2, 3, 67, 80)]  # the last is between frames
    roll = pianoroll(notes, frame_steps=4, lo=21, hi=108)
    assert roll.shape == (2, 88)
    assert roll[0].nonzero()[0].tolist() == [60 - 21]
    assert roll[1].nonzero()[0].tolist() == [60 - 21, 64 - 21]
    assert shift_to_c(7) == 5 and shift_to_c(9) == 3 and shift_to_c(2) == -2 and shift_to_c(6) == 6 - 12


def test_quantize_cleans_same_pitch_overlaps():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    a, b = pretty_midi.Instrument(0), pretty_midi.Instrument(0)
    a.notes = [pretty_midi.Note(80, 60, 0.0, 1.0)]
    b.notes = [pretty_midi.Note(80, 60, 0.0, 0.5),  # unison duplicate: merged (longest end kept)
               pretty_midi.Note(80, 60, 0.5, 1.5)]  # re-struck while sounding: the earlier note ends at 0.5
    pm.instruments = [a, b]
    notes = clean_notes(quantize(pm, CHORALE))
    assert [(n.start, n.end, n.pitch) for n in notes] == [(0, 4, 60), (4, 12, 60)]
    vocab = MidiVocab(CHORALE)
    assert decode_tokens(encode_notes(notes, vocab), vocab) == [n._replace(velocity=80) for n in notes]
