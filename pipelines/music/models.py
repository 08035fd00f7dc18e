"""Music models, registered by name: ``music-lstm`` and ``music-rnn`` (event-token language models) and
``music-pianoroll`` (multi-hot frames, sigmoid outputs, Boulanger-Lewandowski et al. 2012)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

import lstm
from pipelines.registry import register_model

# What each music model reads ("tokens" or "pianoroll"), recorded when it registers (not a second table):
# ``train`` picks the data pipeline from it; bundles carry it in ``extras["data_kind"]``.
DATA_KINDS: dict[str, str] = {}
_BUILDERS: dict[str, object] = {}


def music_model(name: str, data_kind: str):
    """``register_model(name)`` that also records what the model reads."""

    def wrap(fn):
        register_model(name)(fn)
        DATA_KINDS[name] = fn.data_kind = data_kind
        _BUILDERS[name] = fn
        return fn

    return wrap


def model_config(name: str, **kwargs) -> dict:
    """The complete keyword arguments of music model ``name``: its builder's defaults with ``kwargs`` over
    them (what a bundle stores as ``model_config``, so that later default changes cannot alter it).
    Raises ValueError for an unknown model or argument."""
    import inspect

    if name not in _BUILDERS:
        raise ValueError(f"unknown music model {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    params = inspect.signature(_BUILDERS[name]).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"{name} has no setting {', '.join(unknown)} (it takes {', '.join(params)})")
    out = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out.update(kwargs)
    missing = [k for k in params if k not in out]
    if missing:
        raise ValueError(f"{name} needs {', '.join(missing)}")
    return out


class MusicLM(nn.Module):
    """Token embedding → stacked recurrent layers (``lstm.LSTM`` or tanh ``lstm.RNN``) → logits.

    Args:
        vocab_size: V.
        embed_size: E (default 128).
        hidden_size: H (default 384).
        num_layers: stacked layers (default 2).
        dropout: on the embeddings, between layers and before the head (default 0.2).
        cell: "lstm" or "rnn".
        backend: ``lstm.LSTM`` backend ("auto" or "reference").
    """

    def __init__(self, vocab_size: int, embed_size: int = 128, hidden_size: int = 384, num_layers: int = 2,
                 dropout: float = 0.2, cell: str = "lstm", backend: str = "auto"):
        super().__init__()
        if cell not in ("lstm", "rnn"):
            raise ValueError(f"cell must be 'lstm' or 'rnn', got {cell!r}")
        self.vocab_size, self.cell = vocab_size, cell
        self.embed = nn.Embedding(vocab_size, embed_size)
        rnn_cls = lstm.LSTM if cell == "lstm" else lstm.RNN
        self.rnn = rnn_cls(embed_size, hidden_size, num_layers=num_layers, dropout=dropout, backend=backend)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None, state=None):
        """tokens (B, T) long → (logits (B, T, V), state); state as ``lstm.LSTM``/``lstm.RNN``."""
        x = self.drop(self.embed(tokens))  # (B, T, E)
        out, state = self.rnn(x, lengths, state)  # (B, T, H)
        return self.head(self.drop(out)), state

    def zero_state(self, batch_size: int, device=None):
        return self.rnn.zero_state(batch_size, device=device)


@music_model("music-lstm", "tokens")
def music_lstm(vocab_size: int, embed_size: int = 128, hidden_size: int = 384, num_layers: int = 2,
               dropout: float = 0.2, backend: str = "auto") -> MusicLM:
    return MusicLM(vocab_size, embed_size, hidden_size, num_layers, dropout, "lstm", backend)


@music_model("music-rnn", "tokens")
def music_rnn(vocab_size: int, embed_size: int = 128, hidden_size: int = 768, num_layers: int = 2,
              dropout: float = 0.2, backend: str = "auto") -> MusicLM:
    """tanh-RNN baseline: hidden 2× the LSTM's by default, so that both have about as many parameters."""
    return MusicLM(vocab_size, embed_size, hidden_size, num_layers, dropout, "rnn", backend)


@music_model("music-pianoroll", "pianoroll")
class PianoRollLSTM(nn.Module):
    """Multi-hot frames (B, T, P) → LSTM → P independent Bernoulli logits for the NEXT frame.

    ``forward`` returns the logits for frames 1..T given frames 0..T-1 when called on the shifted input
    (see :func:`pianoroll_inputs`); NLL per frame = sum over the P pitches of the binary cross-entropy.
    """

    def __init__(self, n_pitches: int = 88, hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.3,
                 backend: str = "auto"):
        super().__init__()
        self.n_pitches = n_pitches
        self.inp = nn.Linear(n_pitches, hidden_size)
        self.rnn = lstm.LSTM(hidden_size, hidden_size, num_layers=num_layers, dropout=dropout, backend=backend)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_pitches)

    def forward(self, frames: Tensor, lengths: Tensor | None = None, state=None):
        """frames (B, T, P) in {0, 1} → (logits (B, T, P), state)."""
        out, state = self.rnn(self.drop(torch.relu(self.inp(frames))), lengths, state)
        return self.head(self.drop(out)), state


def pianoroll_inputs(rolls: Tensor) -> Tensor:
    """Inputs predicting each frame from the previous ones: a zero frame, then frames 0..T-2."""
    return torch.cat([torch.zeros_like(rolls[:, :1]), rolls[:, :-1]], dim=1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MusicLM", "PianoRollLSTM", "music_lstm", "music_rnn", "pianoroll_inputs", "n_params", "DATA_KINDS",
           "music_model", "model_config"]
