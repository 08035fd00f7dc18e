"""Music models: truncated BPTT carries the state exactly, carried-state generation == re-running the
prefix, sampling filters, piano-roll NLL and generation (the CLI end to end is in test_music_cli.py)."""
import math
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
from torch.nn import functional as F

from encoders.midi import CHORALE, MidiVocab, decode_tokens
from pipelines.music.data import TokenStreams, first_item, notes_to_roll, PianoRollConfig
from pipelines.music.evaluate import roll_nll, token_nll, unigram_nll
from pipelines.music.generate import filter_logits, roll_to_notes, sample_rolls, sample_tokens
from pipelines.music.models import pianoroll_inputs
from pipelines.music.train import CarriedStateLoss, MusicTrainConfig, roll_loss, train
from pipelines.registry import get_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "music"
VOCAB = MidiVocab(CHORALE)


def random_pieces(n=6, seed=0, lo=20, hi=60):
    g = np.random.default_rng(seed)
    return [np.concatenate([[VOCAB.BOS], g.integers(3, VOCAB.size, g.integers(lo, hi)), [VOCAB.EOS]])
            for _ in range(n)]


def test_token_streams_continue_across_chunks():
    pieces = random_pieces()
    ds = TokenStreams(pieces, VOCAB, n_streams=3, bptt=7, seed=1)
    epoch0 = ds.data.clone()
    x0, y0, first = ds[0]
    assert bool(first) and x0.shape == (3, 7) and torch.equal(x0[:, 1:], y0[:, :-1])
    rebuilt = torch.cat([ds[i][0] for i in range(len(ds))], 1)
    last_y = ds[len(ds) - 1][1]
    assert torch.equal(rebuilt, ds.data[:, : rebuilt.shape[1]])  # chunk i+1 starts where chunk i ended
    assert torch.equal(last_y[:, -1], ds.data[:, -1]) and not bool(ds[1][2])
    total = sum(len(p) for p in pieces)
    assert ds.data.numel() == total // 3 * 3
    # epochs: seeded order (deterministic, different from epoch 0), no transposition asked: same tokens
    ds.set_epoch(1)
    e1 = ds.data.clone()
    ds2 = TokenStreams(pieces, VOCAB, n_streams=3, bptt=7, seed=1)
    ds2.set_epoch(1)
    assert torch.equal(e1, ds2.data) and not torch.equal(e1, epoch0)


def test_transposition_augmentation_stays_in_range_and_is_seeded():
    from encoders.io.midi import read_midi
    from encoders.midi import encode_notes, midi_to_notes

    pieces = [np.array(encode_notes(midi_to_notes(read_midi(f), CHORALE), VOCAB, True)) for f in sorted(DATA.glob("*.mid"))]
    a = TokenStreams(pieces, VOCAB, n_streams=2, bptt=16, seed=3, max_transpose=5)
    b = TokenStreams(pieces, VOCAB, n_streams=2, bptt=16, seed=3, max_transpose=5)
    for e in (1, 2):
        a.set_epoch(e), b.set_epoch(e)
        assert torch.equal(a.data, b.data)
    plain = TokenStreams(pieces, VOCAB, n_streams=2, bptt=16, seed=3, max_transpose=0)
    plain.set_epoch(2)
    assert not torch.equal(a.data, plain.data)  # some piece moved
    notes = decode_tokens(a.data.flatten().tolist(), VOCAB)  # NOTE_ON/OFF ids stay inside the vocabulary
    assert notes and all(21 <= n.pitch <= 108 for n in notes)


@pytest.mark.parametrize("name", ["music-lstm", "music-rnn"])
def test_truncated_bptt_carries_state_equal_to_one_long_forward(name):
    torch.manual_seed(0)
    model = get_model(name, vocab_size=VOCAB.size, embed_size=16, hidden_size=24, num_layers=2, dropout=0.0)
    model.eval()
    ds = TokenStreams(random_pieces(8, seed=2), VOCAB, n_streams=4, bptt=10, seed=0)
    loss_fn = CarriedStateLoss()
    chunk_losses, weights = [], []
    for i in range(len(ds)):
        batch = first_item([ds[i]])
        loss = loss_fn(model, batch)
        loss.backward()  # the carried state is detached: each chunk's graph stands alone
        chunk_losses.append(float(loss.detach()))
        weights.append(batch[0].numel())
    carried = sum(l * w for l, w in zip(chunk_losses, weights)) / sum(weights)
    x, y = ds.data[:, :-1], ds.data[:, 1:]
    with torch.no_grad():
        logits, _ = model(x)
        full = float(F.cross_entropy(logits.flatten(0, 1), y.flatten()))
    assert carried == pytest.approx(full, rel=1e-5, abs=1e-5)
    # and without carrying (state reset every chunk) the value differs: the test can fail
    fresh = CarriedStateLoss()
    reset = []
    for i in range(len(ds)):
        fresh.state = None
        x_, y_, _ = ds[i]
        reset.append(float(fresh(model, (x_, y_, torch.tensor(True))).detach()) * x_.numel())
    assert abs(sum(reset) / sum(weights) - full) > 1e-4
    # chunk 0 of a new epoch resets the state
    loss_fn(model, first_item([ds[0]]))
    assert loss_fn.state is not None


@pytest.mark.parametrize("name", ["music-lstm", "music-rnn"])
def test_carried_state_generation_equals_rerunning_the_prefix(name):
    torch.manual_seed(1)
    model = get_model(name, vocab_size=VOCAB.size, embed_size=16, hidden_size=32, num_layers=2, dropout=0.3)
    primer = [VOCAB.note_on(60), VOCAB.note_on(64), VOCAB.shift(4), VOCAB.note_off(60)]
    kw = dict(n=3, max_tokens=25, temperature=1.3, primer=primer, seed=5, return_logits=True)
    seqs, logits = sample_tokens(model, VOCAB, carry_state=True, **kw)
    seqs2, logits2 = sample_tokens(model, VOCAB, carry_state=False, **kw)
    assert seqs == seqs2
    torch.testing.assert_close(logits, logits2, rtol=1e-4, atol=1e-4)
    # the logits each token was drawn from are the full forward's over BOS + primer + earlier tokens
    for b, s in enumerate(seqs):
        assert s[:len(primer)] == primer
        full = torch.tensor([[VOCAB.BOS] + s])
        with torch.no_grad():
            ref, _ = model(full)
        k = len(s) - len(primer)
        torch.testing.assert_close(logits[b, :k], ref[0, len(primer):len(primer) + k], rtol=1e-4, atol=1e-4)


def test_generation_stops_at_time_limit_and_decodes_cleanly():
    torch.manual_seed(2)
    model = get_model("music-lstm", vocab_size=VOCAB.size, embed_size=8, hidden_size=16, num_layers=1)
    seqs = sample_tokens(model, VOCAB, n=4, max_tokens=400, max_steps=32, seed=0)
    for s in seqs:
        steps = sum(VOCAB.kind(t)[1] for t in s if VOCAB.kind(t)[0] == "TIME_SHIFT")
        assert steps < 32 + 16  # stops once 32 steps (8 quarters) are reached
        assert VOCAB.PAD not in s and VOCAB.BOS not in s and VOCAB.EOS not in s
        notes, end = decode_tokens(s, VOCAB, return_end=True)
        assert all(n.end > n.start and n.end <= end for n in notes)  # no stuck or empty notes


def test_filter_logits_top_k_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2)
    with pytest.raises(ValueError):
        filter_logits(logits, temperature=0)


def test_unigram_and_token_nll():
    train_p, test_p = random_pieces(5, 0), random_pieces(3, 1)
    total, n = unigram_nll(train_p, test_p, VOCAB.size)
    assert n == sum(len(p) - 1 for p in test_p)
    assert math.log(VOCAB.size) * 0.9 < total / n < math.log(VOCAB.size) * 1.1  # ~uniform data
    torch.manual_seed(0)
    model = get_model("music-lstm", vocab_size=VOCAB.size, embed_size=8, hidden_size=16, num_layers=1)
    t1, n1 = token_nll(model, test_p, batch_size=2)
    t2 = sum(token_nll(model, [p], batch_size=1)[0] for p in test_p)  # padding changes nothing
    assert n1 == n and t1 == pytest.approx(t2, rel=1e-5)


def test_pianoroll_nll_and_loss_agree_and_sampling_shapes():
    torch.manual_seed(0)
    model = get_model("music-pianoroll", n_pitches=88, hidden_size=16, num_layers=1, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    rolls = [(torch.rand(t, 88, generator=g) < 0.05).float() for t in (7, 12, 9)]
    total, n = roll_nll(model, [r.numpy() for r in rolls], batch_size=2)
    assert n == 28
    # per-frame NLL = summed BCE over 88 pitches; for one piece by hand
    with torch.no_grad():
        lg, _ = model(pianoroll_inputs(rolls[0][None]))
        by_hand = F.binary_cross_entropy_with_logits(lg[0], rolls[0], reduction="sum")
    assert roll_nll(model, [rolls[0].numpy()])[0] == pytest.approx(float(by_hand), rel=1e-5)
    from pipelines.music.data import pad_rolls
    batch = pad_rolls(rolls)
    assert float(roll_loss(model, batch).detach()) == pytest.approx(total / n, rel=1e-5)
    out = sample_rolls(model, n=2, frames=5, primer=rolls[0][:3], seed=0)
    assert out.shape == (2, 8, 88) and torch.equal(out[0, :3], rolls[0][:3])
    notes = roll_to_notes(out[0].numpy(), 4, 21)
    assert all(n.end > n.start and 21 <= n.pitch <= 108 for n in notes)
    back = notes_to_roll(notes, PianoRollConfig(to_c=False))  # frames → notes → frames is exact
    last = int(out[0].sum(1).nonzero().max()) + 1 if out[0].any() else 0
    assert back.shape[0] == last and np.array_equal(back, out[0, :last].numpy())


def test_generate_files_from_a_pianoroll_bundle(music_corpus, tmp_path):
    """A piano-roll model trained through the real path, its head bias raised to about two pitches per frame
    and saved through the real bundle save; generation with a primer writes valid MIDI of the asked length."""
    from pipelines import bundle
    from pipelines.music.inference import generate_files

    res = train(music_corpus, tmp_path / "run", MusicTrainConfig(
        model="music-pianoroll", model_kwargs={"hidden_size": 16, "num_layers": 1}, epochs=1, batch_size=2,
        progress=False, device="cpu"))
    assert res["step"] == 2
    b, _ = bundle.read(tmp_path / "run" / "best.pt", "music")
    assert b["model"] == "music-pianoroll" and b["extras"]["data_kind"] == "pianoroll" and b["vocab"] is None
    b["state_dict"]["head.bias"] = torch.full_like(b["state_dict"]["head.bias"], -2.5)
    ck = bundle.save(b, tmp_path / "p.pt")
    out = generate_files(ck, tmp_path / "g.mid", num=2, tokens=40, primer=DATA / "bwv286.mid")  # 24 frames
    assert len(out) == 2
    for r in out:
        pm = pretty_midi.PrettyMIDI(r["midi"])
        notes = [n for i in pm.instruments for n in i.notes]
        assert notes and all(n.end > n.start and 21 <= n.pitch <= 108 for n in notes)
        assert pm.get_end_time() <= 40 * 0.5 + 1e-6  # 40 quarter-note frames at 120 bpm
