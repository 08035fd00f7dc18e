"""Front ends: audio features, video frames, MIDI tokens.  All file decoding lives in ``encoders.io``."""
