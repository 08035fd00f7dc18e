"""The backbone, proven: the gate-level reference equals nn.LSTM, both backends agree on every option,
streaming equals whole sequences, and the encoder–decoder learns."""
import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm

ATOL = 1e-5


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def run_torch(ref, x, lengths, state=None):
    """nn.LSTM/nn.RNN on padded input through packing (its own way to honour lengths)."""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, st = ref(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, st


@pytest.mark.parametrize("layers,bidir,backend", list(itertools.product([1, 2, 3], [False, True], ["reference", "auto"])))
def test_equals_nn_lstm_outputs_state_and_gradients(layers, bidir, backend):
    torch.manual_seed(layers * 10 + bidir)
    ref = nn.LSTM(5, 7, layers, batch_first=True, bidirectional=bidir)
    ours = lstm.LSTM(5, 7, layers, bidir, backend=backend)
    ours.load_state_dict(ref.state_dict())
    x = seeded(4, 9, 5)
    lengths = torch.tensor([9, 4, 1, 7])
    d = 2 if bidir else 1
    h0, c0 = seeded(layers * d, 4, 7, seed=1), seeded(layers * d, 4, 7, seed=2)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, (h_r, c_r) = run_torch(ref, xr, lengths, (h0, c0))
    out_o, (h_o, c_o) = ours(xo, lengths, (h0, c0))
    torch.testing.assert_close(out_o, out_r, atol=ATOL, rtol=0)
    torch.testing.assert_close(h_o, h_r, atol=ATOL, rtol=0)
    torch.testing.assert_close(c_o, c_r, atol=ATOL, rtol=0)
    w = seeded(*out_r.shape, seed=3)
    ((out_r * w).sum() + h_r.sum() + c_r.square().sum()).backward()
    ((out_o * w).sum() + h_o.sum() + c_o.square().sum()).backward()
    torch.testing.assert_close(xo.grad, xr.grad, atol=ATOL, rtol=0)
    for name, p in ref.named_parameters():
        torch.testing.assert_close(getattr(ours, name).grad, p.grad, atol=ATOL, rtol=0, msg=name)


def test_state_dict_names_match_nn_lstm():
    ref = nn.LSTM(3, 4, 2, batch_first=True, bidirectional=True)
    ours = lstm.LSTM(3, 4, 2, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("layers,bidir", [(1, False), (2, True)])
def test_rnn_equals_nn_rnn(layers, bidir):
    torch.manual_seed(0)
    ref = nn.RNN(5, 6, layers, batch_first=True, bidirectional=bidir)
    x, lengths = seeded(3, 8, 5), torch.tensor([8, 5, 2])
    out_r, h_r = run_torch(ref, x, lengths)
    for backend in ("reference", "auto"):
        ours = lstm.RNN(5, 6, layers, bidir, backend=backend)
        ours.load_state_dict(ref.state_dict())
        out_o, h_o = ours(x, lengths)
        torch.testing.assert_close(out_o, out_r, atol=ATOL, rtol=0)
        torch.testing.assert_close(h_o, h_r, atol=ATOL, rtol=0)


def keras_bidirectional_stack(model, x):
    """What stacked Keras Bidirectional(LSTM, merge_mode=m) layers compute, built from plain nn.LSTMs."""
    H, inp = model.hidden_size, x
    for k in range(model.num_layers):
        outs = []
        for d, sfx in enumerate(["", "_reverse"]):
            one = nn.LSTM(inp.shape[-1], H, batch_first=True)
            one.load_state_dict({f"{n}_l0": getattr(model, f"{n}_l{k}{sfx}") for n in
                                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
            seq = inp if d == 0 else inp.flip(1)
            o = one(seq)[0]
            outs.append(o if d == 0 else o.flip(1))
        f, b = outs
        inp = {"concat": torch.cat([f, b], -1), "sum": f + b, "mul": f * b, "ave": (f + b) / 2}[model.merge]
    return inp


@pytest.mark.parametrize("merge,layers", list(itertools.product(["concat", "sum", "mul", "ave"], [1, 2])))
def test_merge_modes_follow_keras(merge, layers):
    torch.manual_seed(3)
    x = seeded(2, 6, 4)
    auto = lstm.LSTM(4, 5, layers, bidirectional=True, merge=merge)
    refb = lstm.LSTM(4, 5, layers, bidirectional=True, merge=merge, backend="reference")
    refb.load_state_dict(auto.state_dict())
    expected = keras_bidirectional_stack(auto, x)
    out_a, (h_a, c_a) = auto(x)
    out_r, (h_r, c_r) = refb(x)
    assert out_a.shape == (2, 6, 10 if merge == "concat" else 5) and auto.output_size == out_a.shape[-1]
    torch.testing.assert_close(out_a, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(out_r, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(h_a, h_r, atol=ATOL, rtol=0)
    torch.testing.assert_close(c_a, c_r, atol=ATOL, rtol=0)


@pytest.mark.parametrize("merge", ["sum", "ave"])
def test_merge_modes_with_lengths_agree_across_backends(merge):
    torch.manual_seed(4)
    a = lstm.LSTM(4, 5, 2, bidirectional=True, merge=merge)
    r = lstm.LSTM(4, 5, 2, bidirectional=True, merge=merge, backend="reference")
    r.load_state_dict(a.state_dict())
    x, lengths = seeded(3, 7, 4), torch.tensor([7, 3, 5])
    (oa, (ha, ca)), (or_, (hr, cr)) = a(x, lengths), r(x, lengths)
    torch.testing.assert_close(oa, or_, atol=ATOL, rtol=0)
    torch.testing.assert_close(ha, hr, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_padding_never_changes_results(backend):
    torch.manual_seed(5)
    m = lstm.LSTM(3, 4, 2, bidirectional=True, backend=backend)
    x = seeded(1, 5, 3)
    padded = torch.cat([x, 100 * seeded(1, 4, 3, seed=9)], dim=1)  # garbage after the end
    out1, (h1, c1) = m(x)
    out2, (h2, c2) = m(padded, torch.tensor([5]))
    torch.testing.assert_close(out2[:, :5], out1, atol=ATOL, rtol=0)
    assert torch.all(out2[:, 5:] == 0)
    torch.testing.assert_close(h2, h1, atol=ATOL, rtol=0)
    torch.testing.assert_close(c2, c1, atol=ATOL, rtol=0)


def test_batched_equals_item_wise():
    torch.manual_seed(6)
    m = lstm.LSTM(3, 4, 2)
    x, lengths = seeded(3, 6, 3), torch.tensor([6, 2, 4])
    out, (h, _) = m(x, lengths)
    for b in range(3):
        ob, (hb, _) = m(x[b:b + 1, : lengths[b]])
        torch.testing.assert_close(out[b:b + 1, : lengths[b]], ob, atol=ATOL, rtol=0)
        torch.testing.assert_close(h[:, b:b + 1], hb, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend,cls", list(itertools.product(["reference", "auto"], [lstm.LSTM, lstm.RNN])))
def test_streaming_chunks_equal_whole_sequence(backend, cls):
    torch.manual_seed(7)
    m = cls(3, 5, 2, backend=backend)
    x = seeded(2, 12, 3)
    whole, st_whole = m(x)
    state, outs = None, []
    for chunk in x.split([1, 4, 2, 5], dim=1):
        o, state = m(chunk, state=state)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), whole, atol=ATOL, rtol=0)
    for a, b in zip(state if isinstance(state, tuple) else [state], st_whole if isinstance(st_whole, tuple) else [st_whole]):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_stateful_layer_carries_and_resets():
    torch.manual_seed(8)
    m = lstm.LSTM(3, 4, stateful=True)
    x = seeded(2, 8, 3)
    whole, _ = m(x, state=m.zero_state(2))
    m.reset_states()
    o1, _ = m(x[:, :5])
    o2, _ = m(x[:, 5:])
    torch.testing.assert_close(torch.cat([o1, o2], 1), whole, atol=ATOL, rtol=0)
    m.reset_states()
    o1b, _ = m(x[:, :5])
    torch.testing.assert_close(o1b, o1, atol=ATOL, rtol=0)


def test_gate_trace_is_consistent_and_plots(tmp_path):
    torch.manual_seed(9)
    m = lstm.LSTM(3, 6, 2, bidirectional=True)
    x = seeded(2, 7, 3)
    traces = m.trace_gates(x)
    out, (h, c) = m(x)
    assert len(traces) == 4 and set(traces[0]) == set("ifgoc")
    # last layer, forward direction: h_t = o_t * tanh(c_t) must reproduce the layer's output
    fwd = traces[2]
    torch.testing.assert_close(fwd["o"] * torch.tanh(fwd["c"]), out[..., :6], atol=ATOL, rtol=0)
    torch.testing.assert_close(fwd["c"][:, -1], c[2], atol=ATOL, rtol=0)
    # the backward direction ends at t = 0
    torch.testing.assert_close(traces[3]["c"][:, 0], c[3], atol=ATOL, rtol=0)
    for g in "ifo":
        assert traces[0][g].min() >= 0 and traces[0][g].max() <= 1
    png = lstm.plot_gates(traces[0], tmp_path / "gates.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="merge"):
        lstm.LSTM(3, 4, merge="max")
    with pytest.raises(ValueError, match="backend"):
        lstm.LSTM(3, 4, backend="cudnn")
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        lstm.LSTM(3, 4)(torch.zeros(5, 3))


# --- ConvLSTM ---------------------------------------------------------------------------------

def test_convlstm_cell_matches_the_equations():
    torch.manual_seed(10)
    cell = lstm.ConvLSTMCell(2, 3, kernel_size=3, peephole=True, frame_size=(5, 6))
    for p in (cell.w_ci, cell.w_cf, cell.w_co):
        nn.init.normal_(p)
    x, h, c = seeded(1, 2, 5, 6), seeded(1, 3, 5, 6, seed=1), seeded(1, 3, 5, 6, seed=2)
    z = nn.functional.conv2d(torch.cat([x, h], 1), cell.conv.weight, cell.conv.bias, padding=1)
    zi, zf, zg, zo = z.chunk(4, 1)
    i = torch.sigmoid(zi + cell.w_ci * c)
    f = torch.sigmoid(zf + cell.w_cf * c)
    c_new = f * c + i * torch.tanh(zg)
    h_new = torch.sigmoid(zo + cell.w_co * c_new) * torch.tanh(c_new)
    h_o, c_o = cell(x, (h, c))
    torch.testing.assert_close(h_o, h_new, atol=ATOL, rtol=0)
    torch.testing.assert_close(c_o, c_new, atol=ATOL, rtol=0)


def test_convlstm_layers_shapes_and_streaming():
    torch.manual_seed(11)
    m = lstm.ConvLSTM(3, [4, 6], kernel_sizes=[3, 5], return_all_layers=True)
    x = seeded(2, 6, 3, 8, 10)
    outs, state = m(x)
    assert [o.shape for o in outs] == [(2, 6, 4, 8, 10), (2, 6, 6, 8, 10)]
    assert [s[0].shape for s in state] == [(2, 4, 8, 10), (2, 6, 8, 10)]
    st, parts = None, []
    for chunk in x.split([2, 1, 3], dim=1):
        o, st = m(chunk, st)
        parts.append(o[-1])
    torch.testing.assert_close(torch.cat(parts, 1), outs[-1], atol=ATOL, rtol=0)
    for (h1, c1), (h2, c2) in zip(st, state):
        torch.testing.assert_close(h1, h2, atol=ATOL, rtol=0)
        torch.testing.assert_close(c1, c2, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="frame_size"):
        lstm.ConvLSTM(3, 4, peephole=True)
    with pytest.raises(ValueError, match="2 entries for 3 layers"):
        lstm.ConvLSTM(3, [4, 4, 4], kernel_sizes=[3, 3])


def test_cnn_lstm_applies_the_frame_cnn_to_every_frame():
    torch.manual_seed(12)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    m = lstm.CNNLSTM(cnn, 4, 8, num_layers=2)
    frames = seeded(2, 5, 3, 12, 12)
    out, (h, c) = m(frames)
    assert out.shape == (2, 5, 8) and m.output_size == 8
    per_frame = torch.stack([cnn(frames[:, t]) for t in range(5)], 1)
    torch.testing.assert_close(m.encode_frames(frames), per_frame, atol=ATOL, rtol=0)
    torch.testing.assert_close(out, m.lstm(per_frame)[0], atol=ATOL, rtol=0)


# --- encoder–decoder ----------------------------------------------------------------------------

def test_seq2seq_learns_to_reverse_digit_sequences():
    torch.manual_seed(0)
    V, BOS, EOS = 12, 10, 11  # digits 0-9
    model = lstm.Seq2Seq(10, V, hidden_size=64, embed_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        lengths = torch.randint(3, 6, (n,), generator=g)
        digits = torch.randint(0, 10, (n, 5), generator=g)
        src = nn.functional.one_hot(digits, 10).float()
        tgt = [digits[b, : lengths[b]].flip(0).tolist() for b in range(n)]
        return src, lengths, tgt

    def pad(seqs, front):
        L = max(len(s) for s in seqs) + 1
        return torch.tensor([(([BOS] + s) if front else (s + [EOS])) + [EOS] * (L - len(s) - 1) for s in seqs])

    for _ in range(500):
        src, lengths, tgt = batch(64)
        logp = model(src, lengths, pad(tgt, True))
        loss = nn.functional.nll_loss(logp.flatten(0, 1), pad(tgt, False).flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    src, lengths, tgt = batch(200)
    greedy = model.greedy(src, lengths, BOS, EOS, max_len=8)
    exact = sum(p == t for p, t in zip(greedy, tgt)) / len(tgt)
    assert exact >= 0.95, exact
    beam1 = model.beam_search(src[:40], lengths[:40], BOS, EOS, max_len=8, beam_size=1)
    assert beam1 == greedy[:40]
    beam4 = model.beam_search(src[:40], lengths[:40], BOS, EOS, max_len=8, beam_size=4)
    assert sum(p == t for p, t in zip(beam4, tgt[:40])) / 40 >= 0.95


def test_attention_ignores_padded_memory():
    torch.manual_seed(1)
    m = lstm.Seq2Seq(4, 7, hidden_size=8).eval()
    src = seeded(1, 5, 4)
    padded = torch.cat([src, 50 * seeded(1, 3, 4, seed=4)], 1)
    tgt = torch.tensor([[5, 1, 2]])
    a = m(src, torch.tensor([5]), tgt)
    b = m(padded, torch.tensor([5]), tgt)
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_initialisations_set_the_gate_biases():
    H = 8
    m = lstm.LSTM(3, H, 2, forget_bias=1.0)
    for k in range(2):
        b = getattr(m, f"bias_ih_l{k}") + getattr(m, f"bias_hh_l{k}")
        assert torch.all(b[H:2 * H] == 1.0)
    m.chrono_init(100, generator=torch.Generator().manual_seed(0))
    bf = m.bias_ih_l0[H:2 * H] + m.bias_hh_l0[H:2 * H]
    bi = m.bias_ih_l0[:H] + m.bias_hh_l0[:H]
    assert torch.all(bf >= 0) and torch.all(bf <= torch.log(torch.tensor(99.0)))
    torch.testing.assert_close(bi, -bf)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cudnn_path_equals_reference_on_cpu():
    torch.manual_seed(13)
    ref = lstm.LSTM(5, 16, 2, bidirectional=True, merge="sum", backend="reference")
    gpu = lstm.LSTM(5, 16, 2, bidirectional=True, merge="sum").cuda()
    gpu.load_state_dict(ref.state_dict())
    x, lengths = seeded(4, 9, 5), torch.tensor([9, 4, 1, 7])
    out_r, (h_r, c_r) = ref(x, lengths)
    out_g, (h_g, c_g) = gpu(x.cuda(), lengths)
    torch.testing.assert_close(out_g.cpu(), out_r, atol=1e-4, rtol=0)
    torch.testing.assert_close(c_g.cpu(), c_r, atol=1e-4, rtol=0)


def test_decoding_never_emits_bos():
    torch.manual_seed(2)
    m = lstm.Seq2Seq(4, 6, hidden_size=8).eval()
    with torch.no_grad():  # make BOS (id 0) the favourite of an untrained model
        m.decoder.out.bias.zero_()
        m.decoder.out.bias[0] = 50.0
    src = seeded(3, 5, 4)
    for seqs in (m.greedy(src, None, bos=0, eos=1, max_len=6), m.beam_search(src, None, 0, 1, 6, beam_size=3)):
        assert all(0 not in s for s in seqs)


@pytest.mark.parametrize("cls,bidir,merge", [(lstm.LSTM, False, "concat"), (lstm.LSTM, True, "concat"),
                                             (lstm.LSTM, True, "ave"), (lstm.RNN, True, "sum")])
def test_single_step_fast_path_equals_reference(cls, bidir, merge):
    """T = 1 (streaming step by step) takes the fused-cell path; it must equal the gate-level code."""
    torch.manual_seed(14)
    auto = cls(4, 6, 2, bidirectional=bidir, merge=merge)
    ref = cls(4, 6, 2, bidirectional=bidir, merge=merge, backend="reference")
    ref.load_state_dict(auto.state_dict())
    x = seeded(3, 1, 4)
    state = auto.zero_state(3)
    state = tuple(s + 0.3 for s in state) if isinstance(state, tuple) else state + 0.3
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    (oa, sa), (or_, sr) = auto(xa, state=state), ref(xr, state=state)
    torch.testing.assert_close(oa, or_, atol=ATOL, rtol=0)
    for a, r in zip(sa if isinstance(sa, tuple) else [sa], sr if isinstance(sr, tuple) else [sr]):
        torch.testing.assert_close(a, r, atol=ATOL, rtol=0)
    oa.square().sum().backward()
    or_.square().sum().backward()
    torch.testing.assert_close(xa.grad, xr.grad, atol=ATOL, rtol=0)
