"""Music pipeline: MIDI event tokens → LSTM language model → generated MIDI files; piano-roll model for
comparison with the polyphonic-music literature.  Importing it registers ``music-lstm``, ``music-rnn``
and ``music-pianoroll``."""
from . import models  # noqa: F401 - registers the models
from .models import DATA_KINDS, MusicLM, PianoRollLSTM

__all__ = ["models", "DATA_KINDS", "MusicLM", "PianoRollLSTM"]
