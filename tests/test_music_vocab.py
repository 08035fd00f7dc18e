"""Music vocabulary: built from its config alone, config save → load → equal, id ↔ event consistency."""
import dataclasses

import pytest

from encoders.midi import (CHORALE, PERFORMANCE, PRESETS, MidiVocab, MidiVocabConfig, bin_velocity, velocity_bin)


@pytest.mark.parametrize("cfg", list(PRESETS.values()) + [
    MidiVocabConfig(velocity_bins=1, programs=True, pitch_min=30, pitch_max=90, max_shift_steps=7)],
    ids=list(PRESETS) + ["programs-novel"])
def test_config_roundtrip_and_vocab_from_config_only(cfg, tmp_path):
    assert MidiVocabConfig.from_dict(cfg.to_dict()) == cfg
    path = cfg.save(tmp_path / "vocab.json")
    loaded = MidiVocabConfig.load(path)
    assert loaded == cfg
    a, b = MidiVocab(cfg), MidiVocab(loaded)
    assert a == b and a.tokens == b.tokens and len(a) == len(a.tokens)
    # every id maps to the event its name says, and the id helpers agree
    for i, name in enumerate(a.tokens):
        kind, value = a.kind(i)
        assert name == kind if kind in ("PAD", "BOS", "EOS") else name == f"{kind}_{value}"
    assert a.tokens[a.note_on(cfg.pitch_min)] == f"NOTE_ON_{cfg.pitch_min}"
    assert a.tokens[a.note_off(cfg.pitch_max)] == f"NOTE_OFF_{cfg.pitch_max}"
    assert a.tokens[a.shift(cfg.max_shift_steps)] == f"TIME_SHIFT_{cfg.max_shift_steps}"
    with pytest.raises(ValueError):
        a.kind(len(a))


def test_sizes_follow_the_config():
    # Performance RNN: 128 NOTE_ON + 128 NOTE_OFF + 100 TIME_SHIFT + 32 VELOCITY (+ PAD/BOS/EOS)
    assert len(MidiVocab(PERFORMANCE)) == 3 + 128 + 128 + 100 + 32
    # chorales: piano range, 16 sixteenth-note shifts, no velocity
    assert len(MidiVocab(CHORALE)) == 3 + 88 + 88 + 16
    v = MidiVocab(dataclasses.replace(CHORALE, programs=True, velocity_bins=4))
    assert len(v) == 3 + 88 + 88 + 16 + 4 + 128
    assert not any(t.startswith("VELOCITY") for t in MidiVocab(CHORALE).tokens)
    assert MidiVocab(PERFORMANCE) != MidiVocab(CHORALE)


def test_bad_configs_raise():
    for kw in ({"time_unit": "bars"}, {"pitch_min": 100, "pitch_max": 50}, {"velocity_bins": 0},
               {"max_shift_steps": 0}, {"pitch_max": 128}):
        with pytest.raises(ValueError):
            MidiVocabConfig(**kw)


def test_velocity_bins_cover_1_to_127_in_order():
    for bins in (1, 4, 32, 127):
        b = [velocity_bin(v, bins) for v in range(1, 128)]
        assert b == sorted(b) and b[0] == 0 and b[-1] == bins - 1 and len(set(b)) == bins
        for k in range(bins):  # a bin's centre falls back into the bin
            assert velocity_bin(bin_velocity(k, bins), bins) == k
