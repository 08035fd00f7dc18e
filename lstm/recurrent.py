"""LSTM and tanh-RNN layers with two interchangeable backends.

``backend="reference"`` runs the gates step by step in plain PyTorch (readable, traceable);
``backend="auto"`` hands the same parameters to ``torch.nn.LSTM``/``nn.RNN`` so that cuDNN
(GPU) or oneDNN (CPU) runs them.  Parameter names and gate order are those of ``nn.LSTM``
(``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``_reverse``
suffix; gates stacked as i, f, g, o), so state dicts move freely between the three.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

MERGES = ("concat", "sum", "mul", "ave")
BACKENDS = ("auto", "reference")


@dataclass(frozen=True)
class RecurrentConfig:
    """Everything needed to rebuild an :class:`LSTM` or :class:`RNN` (stored in checkpoints)."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    merge: str = "concat"
    dropout: float = 0.0
    backend: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RecurrentConfig":
        return cls(**d)


def merge_directions(fwd: Tensor, bwd: Tensor, merge: str) -> Tensor:
    """Combine forward and backward outputs as Keras' ``Bidirectional(merge_mode=...)``."""
    if merge == "concat":
        return torch.cat([fwd, bwd], dim=-1)
    if merge == "sum":
        return fwd + bwd
    if merge == "mul":
        return fwd * bwd
    if merge == "ave":
        return (fwd + bwd) * 0.5
    raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of ``x`` (B, T, ...) within its own length; padding stays in place."""
    B, T = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(0).expand(B, T)
    L = lengths.to(x.device).unsqueeze(1)
    idx = torch.where(t < L, L - 1 - t, t)
    idx = idx.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def lstm_cell(x_proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None):
    """One LSTM step.  ``x_proj`` = W_ih x + b_ih, already computed for the step.

    Returns (h, c, (i, f, g, o)).
    """
    gates = x_proj + h @ w_hh.t()
    if b_hh is not None:
        gates = gates + b_hh
    i, f, g, o = gates.chunk(4, dim=-1)
    i = torch.sigmoid(i)  # input gate: how much of the candidate enters the cell
    f = torch.sigmoid(f)  # forget gate: how much of the old cell survives
    g = torch.tanh(g)  # candidate cell content
    o = torch.sigmoid(o)  # output gate: how much of the cell is shown as h
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c, (i, f, g, o)


def rnn_tanh_cell(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    pre = x_proj + h @ w_hh.t()
    if b_hh is not None:
        pre = pre + b_hh
    return torch.tanh(pre)


class _Recurrent(nn.Module):
    """Shared machinery of :class:`LSTM` and :class:`RNN`."""

    _mode = "lstm"  # or "rnn_tanh"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout: float = 0.0,
        backend: str = "auto",
        stateful: bool = False,
        forget_bias: float | None = None,
    ):
        super().__init__()
        self.forget_bias = forget_bias
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        self.config = RecurrentConfig(input_size, hidden_size, num_layers, bidirectional, merge, dropout, backend)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.merge = merge
        self.dropout = float(dropout)
        self.backend = backend
        self.stateful = stateful
        self._carried = None
        # Keras semantics: each bidirectional layer merges its two directions before the next
        # layer.  With "concat" that is exactly nn.LSTM's stacking, so one engine runs all
        # layers; other merges need one engine per layer.
        one_engine = merge == "concat" or not bidirectional or num_layers == 1
        engines = []
        if one_engine:
            engines.append(self._make_engine(input_size, num_layers))
        else:
            for k in range(num_layers):
                engines.append(self._make_engine(input_size if k == 0 else hidden_size, 1))
        # The engines are kept out of the module tree (no duplicate parameters in state_dict);
        # their parameters are registered here under nn.LSTM's names.
        object.__setattr__(self, "_engines", engines)
        for e_idx, eng in enumerate(engines):
            offset = 0 if one_engine else e_idx
            for name, p in list(eng.named_parameters()):
                base, rest = name.rsplit("_l", 1)
                layer, _, sfx = rest.partition("_")
                self.register_parameter(f"{base}_l{int(layer) + offset}{'_' + sfx if sfx else ''}", p)
        self.reset_parameters()

    # --- construction -----------------------------------------------------------------
    def _make_engine(self, input_size: int, num_layers: int) -> nn.RNNBase:
        kw = dict(batch_first=True, bidirectional=self.bidirectional, num_layers=num_layers,
                  dropout=self.dropout if num_layers > 1 else 0.0)
        if self._mode == "lstm":
            return nn.LSTM(input_size, self.hidden_size, **kw)
        return nn.RNN(input_size, self.hidden_size, nonlinearity="tanh", **kw)

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(H), 1/sqrt(H)), as nn.LSTM."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)
        if self._mode == "lstm" and self.forget_bias is not None:
            H = self.hidden_size
            with torch.no_grad():  # Keras' unit_forget_bias: the cell remembers by default at the start
                for name, p in self.named_parameters():
                    if name.startswith("bias_ih"):
                        p[H:2 * H].fill_(self.forget_bias)
                    elif name.startswith("bias_hh"):
                        p[H:2 * H].zero_()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        for eng in self._engines:  # keep cuDNN's flat weight buffer valid after .to()/.cuda()
            eng._init_flat_weights()
            eng.flatten_parameters()
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"{c.input_size}, {c.hidden_size}, num_layers={c.num_layers}, bidirectional={c.bidirectional}, "
                f"merge={c.merge!r}, dropout={c.dropout}, backend={c.backend!r}")

    @property
    def output_size(self) -> int:
        if self.bidirectional and self.merge == "concat":
            return 2 * self.hidden_size
        return self.hidden_size

    def _p(self, kind: str, layer: int, direction: int) -> Tensor:
        return getattr(self, f"{kind}_l{layer}{'_reverse' if direction else ''}")

    # --- state -------------------------------------------------------------------------
    def zero_state(self, batch_size: int, device=None, dtype=None):
        w = self.weight_hh_l0
        h = w.new_zeros(self.num_layers * self.num_directions, batch_size, self.hidden_size,
                        device=device, dtype=dtype)
        return (h, h.clone()) if self._mode == "lstm" else h

    def reset_states(self) -> None:
        """Forget the carried state of a ``stateful=True`` layer (start of a new stream)."""
        self._carried = None

    # --- forward -----------------------------------------------------------------------
    def forward(self, x: Tensor, lengths: Tensor | None = None, state=None):
        """Run the layer.

        Args:
            x: (B, T, input_size), batch first.
            lengths: (B,) valid steps per sequence; padding never changes results and the
                output at padded steps is zero.  ``None``: all sequences have T steps.
            state: initial state; LSTM: ``(h, c)`` each (num_layers * num_directions, B, H);
                RNN: ``h``.  ``None``: zeros (or the carried state when ``stateful``).
        Returns:
            ``(out, state)`` with out (B, T, output_size) and the final state (at each
            sequence's last valid step), in the same layout as ``state``.
        """
        if x.dim() != 3:
            raise ValueError(f"expected input of shape (B, T, D), got {tuple(x.shape)}")
        if state is None and self.stateful:
            state = self._carried
        if self.backend == "reference":
            out, new_state, _ = self._reference(x, lengths, state, trace=False)
        else:
            out, new_state = self._fast(x, lengths, state)
        if self.stateful:
            self._carried = tuple(s.detach() for s in new_state) if isinstance(new_state, tuple) \
                else new_state.detach()
        return out, new_state

    def _split_state(self, state, B, x):
        if state is None:
            return self.zero_state(B, device=x.device, dtype=x.dtype)
        return state

    def _fast(self, x, lengths, state):
        B, T, _ = x.shape
        state = self._split_state(state, B, x)
        packed = None
        if lengths is not None:
            lengths = lengths.to("cpu", torch.long)
            if lengths.shape != (B,) or bool((lengths < 1).any()) or bool((lengths > T).any()):
                raise ValueError(f"lengths must be (B,) = ({B},) values in [1, {T}], got {lengths.tolist()}")
            if bool((lengths == T).all()):
                lengths = None
            elif x.device.type == "cpu":
                # oneDNN has no packed-sequence kernel: PyTorch's CPU fallback for PackedSequence is
                # ~9x slower than a padded batch, so run equal-length segments instead.
                return self._segmented(x, lengths, state)
            else:
                packed = lambda t: pack_padded_sequence(t, lengths, batch_first=True, enforce_sorted=False)  # noqa: E731
        if T == 1 and packed is None:
            return self._single_step(x, state)
        if len(self._engines) == 1:
            return self._run_engine(self._engines[0], x, state, packed, T)
        # one engine per layer, merging directions in between (Keras stacking)
        hs, cs = [], []
        inp = x
        for k, eng in enumerate(self._engines):
            sl = slice(2 * k, 2 * k + 2)
            st = (state[0][sl], state[1][sl]) if self._mode == "lstm" else state[sl]
            out, st = self._run_engine(eng, inp, st, packed, T)
            fwd, bwd = out[..., : self.hidden_size], out[..., self.hidden_size:]
            inp = merge_directions(fwd, bwd, self.merge)
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                inp = nn.functional.dropout(inp, self.dropout, True)
            if self._mode == "lstm":
                hs.append(st[0]); cs.append(st[1])
            else:
                hs.append(st)
        new_state = (torch.cat(hs), torch.cat(cs)) if self._mode == "lstm" else torch.cat(hs)
        return inp, new_state

    def _run_engine(self, eng, x, state, packed, T):
        eng.train(self.training)
        if packed is not None:
            out, st = eng(packed(x), state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
        else:
            out, st = eng(x, state)
        if self.bidirectional and self.merge != "concat" and len(self._engines) == 1:
            out = merge_directions(out[..., : self.hidden_size], out[..., self.hidden_size:], self.merge)
        return out, st

    def _weights(self, layer: int, direction: int) -> list[Tensor]:
        """[W_ih, W_hh, b_ih, b_hh] of one layer and direction, in the order the fused kernels take."""
        return [self._p(n, layer, direction) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def _stack(self, x, lengths, state, run):
        """The skeleton shared by the gate-level, segmented and single-step paths.

        ``run(seq, k, d, h, c) -> (out, h, c, trace)`` runs direction ``d`` of layer ``k`` over ``seq``
        (for the backward direction already reversed within each sequence's length) from state (h, c)
        and returns its outputs in that same order, the final state and a dict of per-step traces (or
        None).  This flips backward results back, merges directions after every layer (Keras
        semantics), applies inter-layer dropout and gathers the final states.
        Returns (out, state, traces).
        """
        is_lstm = self._mode == "lstm"
        h0_all, c0_all = state if is_lstm else (state, None)
        flip = (lambda t: t.flip(1)) if lengths is None else (lambda t: reverse_padded(t, lengths))
        hs, cs, traces = [], [], []
        inp = x
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                idx = k * self.num_directions + d
                out, h, c, tr = run(inp if d == 0 else flip(inp), k, d, h0_all[idx],
                                    c0_all[idx] if is_lstm else None)
                if d == 1:
                    out = flip(out)
                    tr = None if tr is None else {n: flip(v) for n, v in tr.items()}
                outs.append(out)
                hs.append(h)
                if is_lstm:
                    cs.append(c)
                if tr is not None:
                    traces.append(tr)
            inp = outs[0] if len(outs) == 1 else merge_directions(outs[0], outs[1], self.merge)
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                inp = nn.functional.dropout(inp, self.dropout, True)
        new_state = (torch.stack(hs), torch.stack(cs)) if is_lstm else torch.stack(hs)
        return inp, new_state, traces

    def _single_step(self, x, state):
        """One time step (streaming) through the fused cell kernels: a whole nn.LSTM call costs about
        3x more than the step itself on a CPU thread."""

        def run(seq, k, d, h, c):
            if self._mode == "lstm":
                h, c = torch.lstm_cell(seq[:, 0], (h, c), *self._weights(k, d))
            else:
                h = torch.rnn_tanh_cell(seq[:, 0], h, *self._weights(k, d))
            return h.unsqueeze(1), h, c, None

        out, new_state, _ = self._stack(x, None, state, run)
        return out, new_state

    def _segmented(self, x, lengths, state):
        """Variable lengths through the fused kernels without packing: each layer and direction runs
        over the steps where the set of unfinished sequences stays the same, state carried across."""
        B, T, _ = x.shape
        is_lstm = self._mode == "lstm"
        bounds = sorted(set(lengths.tolist()))

        def run(seq, k, d, h, c):
            weights = self._weights(k, d)
            pieces, start = [], 0
            for stop in bounds:
                alive = (lengths > start).nonzero().squeeze(1).to(x.device)
                everyone = len(alive) == B
                seg = seq[:, start:stop] if everyone else seq[alive, start:stop]
                hx = h.unsqueeze(0) if everyone else h[alive].unsqueeze(0)
                if is_lstm:
                    cx = c.unsqueeze(0) if everyone else c[alive].unsqueeze(0)
                    o, hn, cn = torch._VF.lstm(seg, (hx, cx), weights, True, 1, 0.0, self.training, False, True)
                else:
                    o, hn = torch._VF.rnn_tanh(seg, hx, weights, True, 1, 0.0, self.training, False, True)
                if everyone:
                    pieces.append(o)
                    h = hn[0]
                    c = cn[0] if is_lstm else None
                else:
                    pieces.append(o.new_zeros(B, stop - start, self.hidden_size).index_copy(0, alive, o))
                    h = h.index_copy(0, alive, hn[0])
                    c = c.index_copy(0, alive, cn[0]) if is_lstm else None
                start = stop
            if start < T:
                pieces.append(x.new_zeros(B, T - start, self.hidden_size))
            return torch.cat(pieces, dim=1), h, c, None

        out, new_state, _ = self._stack(x, lengths, state, run)
        return out, new_state

    # --- reference (gate level) --------------------------------------------------------
    def _reference(self, x, lengths, state, trace: bool):
        B, T, _ = x.shape
        state = self._split_state(state, B, x)
        if lengths is not None:
            lengths = lengths.to(x.device, torch.long)
        mask = None if lengths is None else torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        if mask is not None and bool(mask.all()):
            mask = None
        is_lstm = self._mode == "lstm"

        def run(seq, k, d, h, c):
            w_ih, w_hh, b_ih, b_hh = self._weights(k, d)
            x_proj = seq @ w_ih.t() + b_ih  # (B, T, G*H) for all steps at once
            outs = []
            tr = {n: [] for n in "ifgoc"} if trace and is_lstm else None
            for t in range(T):
                if is_lstm:
                    h_new, c_new, gates = lstm_cell(x_proj[:, t], h, c, w_hh, b_hh)
                    if tr is not None:
                        for n, g in zip("ifgo", gates):
                            tr[n].append(g)
                        tr["c"].append(c_new)
                else:
                    h_new, c_new = rnn_tanh_cell(x_proj[:, t], h, w_hh, b_hh), None
                if mask is None:
                    h, c = h_new, c_new
                    outs.append(h)
                else:  # padded steps keep the state and output zeros
                    m = mask[:, t].unsqueeze(1)
                    h = torch.where(m, h_new, h)
                    if is_lstm:
                        c = torch.where(m, c_new, c)
                    outs.append(h_new * m)
            tr = None if tr is None else {n: torch.stack(v, dim=1) for n, v in tr.items()}
            return torch.stack(outs, dim=1), h, c, tr

        return self._stack(x, lengths, state, run)


class LSTM(_Recurrent):
    """Batch-first LSTM: stacked, bidirectional (Keras merge modes), variable lengths, state in/out.

    Args:
        input_size: features per step D.
        hidden_size: units per direction H.
        num_layers: stacked layers (default 1).
        bidirectional: add a backward direction (default False).
        merge: how directions combine: "concat" (2H), "sum", "mul", "ave" (H); applied after
            every layer, as stacked Keras ``Bidirectional`` layers.
        dropout: dropout on the outputs of every layer but the last (training only).
        backend: "auto" (nn.LSTM: cuDNN/oneDNN) or "reference" (gate-level Python).
        stateful: carry the final state into the next call (Keras ``stateful=True``);
            ``reset_states()`` starts over.
        forget_bias: initialise the forget-gate bias to this value (Keras ``unit_forget_bias``
            is 1.0); None: nn.LSTM's uniform initialisation.  Only the start of training differs.
    """

    _mode = "lstm"

    def chrono_init(self, max_steps: int, generator: torch.Generator | None = None) -> None:
        """Chrono initialisation (Tallec & Ollivier 2018): forget-gate biases log(U[1, max_steps - 1])
        and input-gate biases their negatives, so that units start with memory time scales spread
        up to ``max_steps`` — the dependency range the task needs."""
        H = self.hidden_size
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.startswith("bias_ih"):
                    u = torch.rand(H, generator=generator) * (max_steps - 2) + 1
                    p[H:2 * H].copy_(torch.log(u))
                    p[:H].copy_(-torch.log(u))
                elif name.startswith("bias_hh"):
                    p[:2 * H].zero_()

    def trace_gates(self, x: Tensor, lengths: Tensor | None = None, state=None) -> list[dict[str, Tensor]]:
        """Run the reference path and return, per layer and direction (layer-major), a dict of
        the gates ``i, f, g, o`` and cell ``c``, each (B, T, H)."""
        _, _, traces = self._reference(x, lengths, state, trace=True)
        return traces


class RNN(_Recurrent):
    """Plain tanh RNN with the same interface as :class:`LSTM` (state is ``h`` only)."""

    _mode = "rnn_tanh"
