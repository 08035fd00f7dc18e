"""Encoder–decoder with attention: an LSTM encoder over feature sequences and an LSTM decoder
with Luong ("general") attention and input feeding; teacher forcing, greedy and beam search."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .recurrent import LSTM


def length_mask(lengths: Tensor | None, S: int, device) -> Tensor:
    """(B, S) bool mask of valid positions (all True when lengths is None)."""
    if lengths is None:
        return torch.ones(1, S, dtype=torch.bool, device=device)
    return torch.arange(S, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


class AttentionDecoder(nn.Module):
    """LSTM decoder attending over a memory (encoder outputs).

    Each step: input = [embed(y_{t-1}); h̃_{t-1}] → LSTM → h_t; scores = h_t W m_s over the valid
    memory positions; context = Σ α_s m_s; h̃_t = tanh(W_c [context; h_t]); logits = W_o h̃_t.

    Args:
        vocab_size: output tokens V.
        hidden_size: decoder LSTM units.
        memory_size: feature size of the memory E.
        embed_size: token embedding size (default hidden_size).
        num_layers: decoder LSTM layers.
        dropout: on embeddings and h̃ (training only).
    """

    def __init__(self, vocab_size: int, hidden_size: int, memory_size: int, embed_size: int | None = None,
                 num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        embed_size = embed_size or hidden_size
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = LSTM(embed_size + hidden_size, hidden_size, num_layers,
                        dropout=dropout if num_layers > 1 else 0.0)
        self.attn = nn.Linear(memory_size, hidden_size, bias=False)
        self.combine = nn.Linear(memory_size + hidden_size, hidden_size)
        self.bridge = nn.Linear(memory_size, 2 * num_layers * hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)
        self.drop = nn.Dropout(dropout)

    def init_state(self, memory: Tensor, mask: Tensor):
        """Initial (h, c) and h̃ from the mean of the valid memory."""
        m = mask.unsqueeze(-1).to(memory.dtype)
        mean = (memory * m).sum(1) / m.sum(1).clamp_min(1)
        hc = torch.tanh(self.bridge(mean)).view(-1, 2, self.num_layers, self.hidden_size)
        h = hc[:, 0].transpose(0, 1).contiguous()
        c = hc[:, 1].transpose(0, 1).contiguous()
        feed = memory.new_zeros(memory.shape[0], self.hidden_size)
        return (h, c), feed

    def step(self, tokens: Tensor, state, feed: Tensor, memory: Tensor, keys: Tensor, mask: Tensor):
        """One decoding step. tokens: (B,); returns (log_probs (B, V), state, feed, attention (B, S))."""
        emb = self.drop(self.embed(tokens))
        out, state = self.rnn(torch.cat([emb, feed], dim=-1).unsqueeze(1), state=state)
        h = out[:, 0]  # (B, H)
        scores = torch.einsum("bh,bsh->bs", h, keys).masked_fill(~mask, float("-inf"))
        alpha = scores.softmax(-1)
        context = torch.einsum("bs,bse->be", alpha, memory)
        feed = self.drop(torch.tanh(self.combine(torch.cat([context, h], dim=-1))))
        return F.log_softmax(self.out(feed), dim=-1), state, feed, alpha

    def forward(self, memory: Tensor, memory_lengths: Tensor | None, tgt_in: Tensor) -> Tensor:
        """Teacher forcing. memory (B, S, E); tgt_in (B, L) starting with BOS. Returns log-probs (B, L, V)."""
        mask = length_mask(memory_lengths, memory.shape[1], memory.device).expand(memory.shape[0], -1)
        keys = self.attn(memory)
        state, feed = self.init_state(memory, mask)
        outs = []
        for t in range(tgt_in.shape[1]):
            logp, state, feed, _ = self.step(tgt_in[:, t], state, feed, memory, keys, mask)
            outs.append(logp)
        return torch.stack(outs, dim=1)

    @torch.no_grad()
    def greedy(self, memory: Tensor, memory_lengths: Tensor | None, bos: int, eos: int, max_len: int) -> list[list[int]]:
        """Most likely token at every step; returns token lists without BOS/EOS."""
        B = memory.shape[0]
        mask = length_mask(memory_lengths, memory.shape[1], memory.device).expand(B, -1)
        keys = self.attn(memory)
        state, feed = self.init_state(memory, mask)
        tokens = torch.full((B,), bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        seqs: list[list[int]] = [[] for _ in range(B)]
        for _ in range(max_len):
            logp, state, feed, _ = self.step(tokens, state, feed, memory, keys, mask)
            logp[:, bos] = float("-inf")  # BOS only ever starts a sequence
            tokens = logp.argmax(-1)
            for b in range(B):
                if not done[b] and tokens[b].item() != eos:
                    seqs[b].append(tokens[b].item())
            done |= tokens == eos
            if bool(done.all()):
                break
        return seqs

    @torch.no_grad()
    def beam_search(self, memory: Tensor, memory_lengths: Tensor | None, bos: int, eos: int, max_len: int,
                    beam_size: int = 5, length_penalty: float = 0.0) -> list[list[int]]:
        """Beam search per item (K hypotheses decoded as one batch); score = log p / len**length_penalty.

        With ``beam_size=1`` it returns exactly what :meth:`greedy` returns.
        """
        results = []
        for b in range(memory.shape[0]):
            mem = memory[b:b + 1]
            lens = None if memory_lengths is None else memory_lengths[b:b + 1]
            results.append(self._beam_one(mem, lens, bos, eos, max_len, beam_size, length_penalty))
        return results

    def _beam_one(self, mem, lens, bos, eos, max_len, K, alpha):
        mask = length_mask(lens, mem.shape[1], mem.device).expand(1, -1)
        keys = self.attn(mem)
        state, feed = self.init_state(mem, mask)
        hyps: list[list[int]] = [[]]
        scores = mem.new_zeros(1)
        finished: list[tuple[float, list[int]]] = []
        tokens = torch.full((1,), bos, dtype=torch.long, device=mem.device)
        for t in range(max_len):
            n = len(hyps)
            logp, state, feed, _ = self.step(tokens, state, feed, mem.expand(n, -1, -1), keys.expand(n, -1, -1),
                                             mask.expand(n, -1))
            logp[:, bos] = float("-inf")
            cand = (scores.unsqueeze(1) + logp).view(-1)
            top = cand.topk(min(K, cand.numel()))
            new_hyps, keep, new_scores, new_tokens = [], [], [], []
            for s, flat in zip(top.values.tolist(), top.indices.tolist()):
                src, tok = divmod(flat, self.vocab_size)
                if tok == eos:
                    finished.append((s / max(len(hyps[src]) + 1, 1) ** alpha, hyps[src]))
                else:
                    new_hyps.append(hyps[src] + [tok]); keep.append(src)
                    new_scores.append(s); new_tokens.append(tok)
            # stop once the best finished hypothesis beats every live one (scores only fall)
            if finished and (not new_hyps or max(f[0] for f in finished) >= max(
                    s / (t + 2) ** alpha for s in new_scores)):
                break
            if not new_hyps:
                break
            idx = torch.tensor(keep, device=mem.device)
            state = (state[0][:, idx], state[1][:, idx])
            feed = feed[idx]
            hyps, scores = new_hyps, mem.new_tensor(new_scores)
            tokens = torch.tensor(new_tokens, device=mem.device)
        if not finished:
            finished = [(s / max(len(h), 1) ** alpha, h) for s, h in zip(scores.tolist(), hyps)]
        return max(finished, key=lambda f: f[0])[1]


class Seq2Seq(nn.Module):
    """LSTM encoder over (B, S, input_size) features + :class:`AttentionDecoder`.

    Args:
        input_size: features per source step.
        vocab_size: target tokens.
        hidden_size: units of encoder (per direction) and decoder.
        embed_size: target embedding size.
        enc_layers, dec_layers: stacked layers.
        bidirectional_encoder: encoder reads both ways (concat merge).
        dropout: dropout in both.
    """

    def __init__(self, input_size: int, vocab_size: int, hidden_size: int = 128, embed_size: int | None = None,
                 enc_layers: int = 1, dec_layers: int = 1, bidirectional_encoder: bool = True, dropout: float = 0.0):
        super().__init__()
        self.encoder = LSTM(input_size, hidden_size, enc_layers, bidirectional_encoder, dropout=dropout)
        self.decoder = AttentionDecoder(vocab_size, hidden_size, self.encoder.output_size, embed_size,
                                        dec_layers, dropout)

    def encode(self, src: Tensor, src_lengths: Tensor | None = None) -> Tensor:
        return self.encoder(src, src_lengths)[0]

    def forward(self, src: Tensor, src_lengths: Tensor | None, tgt_in: Tensor) -> Tensor:
        """Teacher-forced log-probs (B, L, V) for targets ``tgt_in`` (B, L) that start with BOS."""
        return self.decoder(self.encode(src, src_lengths), src_lengths, tgt_in)

    @torch.no_grad()
    def greedy(self, src, src_lengths, bos: int, eos: int, max_len: int) -> list[list[int]]:
        return self.decoder.greedy(self.encode(src, src_lengths), src_lengths, bos, eos, max_len)

    @torch.no_grad()
    def beam_search(self, src, src_lengths, bos: int, eos: int, max_len: int, beam_size: int = 5,
                    length_penalty: float = 0.0) -> list[list[int]]:
        return self.decoder.beam_search(self.encode(src, src_lengths), src_lengths, bos, eos, max_len,
                                        beam_size, length_penalty)
