"""symusic (C++) reading gives exactly the tokens of pretty_midi (pure Python) reading, faster."""
from pathlib import Path

import pytest

from encoders.io import DecodeError
from encoders.io.midi import load_notes, read_midi, read_score
from encoders.midi import CHORALE, PERFORMANCE, MidiVocab, encode_notes, midi_to_notes

DATA = Path(__file__).parent / "data" / "music"
CONFIGS = {"chorale": CHORALE, "performance": PERFORMANCE}


def tokens(path, cfg, reader):
    notes = midi_to_notes(read_midi(path), cfg) if reader == "pretty_midi" else load_notes(path, cfg, reader=reader)
    return encode_notes(notes, MidiVocab(cfg))


@pytest.fixture(scope="session")
def chorale_corpus(tmp_path_factory):
    """Every Bach chorale of music21's corpus written to MIDI once per test run."""
    pytest.importorskip("music21")
    from pipelines.music.corpus import build_chorales

    out = tmp_path_factory.mktemp("chorales")
    build_chorales(out, workers=2, progress=False)
    files = sorted(out.rglob("*.mid"))
    assert len(files) > 300
    return files


@pytest.mark.parametrize("cfg", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("path", sorted(DATA.glob("*.mid")), ids=lambda p: p.name)
def test_symusic_tokens_equal_pretty_midi_tokens(path, cfg):
    assert tokens(path, CONFIGS[cfg], "symusic") == tokens(path, CONFIGS[cfg], "pretty_midi")


@pytest.mark.slow
def test_symusic_tokens_equal_over_the_chorale_corpus(chorale_corpus):
    for cfg in CONFIGS.values():
        for f in chorale_corpus:
            assert tokens(f, cfg, "auto") == tokens(f, cfg, "pretty_midi"), f.name


def test_overlapping_same_pitch_notes_fall_back_to_pretty_midi(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=480)
    inst = pretty_midi.Instrument(0)
    # a second note-on of the same pitch while the first sounds: readers pair the note-offs differently
    inst.notes += [pretty_midi.Note(90, 60, 0.0, 1.0), pretty_midi.Note(90, 60, 0.5, 2.0),
                   pretty_midi.Note(90, 64, 0.0, 2.0)]
    pm.instruments.append(inst)
    f = tmp_path / "overlap.mid"
    pm.write(str(f))
    assert read_score(f).overlapping()
    assert tokens(f, CHORALE, "auto") == tokens(f, CHORALE, "pretty_midi")


def test_tick_to_seconds_follows_tempo_changes(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=100)
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 60 + k, 0.3 * k, 0.3 * k + 0.25) for k in range(12)]
    pm.instruments.append(inst)
    f = tmp_path / "t.mid"
    pm.write(str(f))
    ref = read_midi(f)
    sc = read_score(f)
    ticks = [0, 240, 480, 5000]
    assert sc.tick_to_seconds(ticks).tolist() == pytest.approx([ref.tick_to_time(t) for t in ticks], abs=1e-9)
    assert tokens(f, PERFORMANCE, "symusic") == tokens(f, PERFORMANCE, "pretty_midi")


@pytest.mark.parametrize("content,reason", [(b"hello", "no MThd header"), (b"MThd\x00\x00", "corrupt MIDI")])
def test_symusic_reader_errors_are_one_line(tmp_path, content, reason):
    f = tmp_path / "bad.mid"
    f.write_bytes(content)
    with pytest.raises(DecodeError, match=reason) as e:
        read_score(f)
    assert "\n" not in str(e.value) and str(f) in str(e.value)
