"""lstm-media's backbone: gate-level LSTM equal to nn.LSTM, fast cuDNN/oneDNN path, ConvLSTM,
CNN-LSTM, attention encoder–decoder, streaming state and gate tracing.  Imports nothing but torch."""
from .conv import CNNLSTM, ConvLSTM, ConvLSTMCell
from .plot import plot_gates
from .recurrent import LSTM, MERGES, RNN, RecurrentConfig, lstm_cell, merge_directions, reverse_padded
from .seq2seq import AttentionDecoder, Seq2Seq, length_mask

__all__ = [
    "LSTM", "RNN", "RecurrentConfig", "MERGES", "lstm_cell", "merge_directions", "reverse_padded",
    "ConvLSTM", "ConvLSTMCell", "CNNLSTM", "AttentionDecoder", "Seq2Seq", "length_mask", "plot_gates",
]
