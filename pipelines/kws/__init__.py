"""Keyword spotting: offline synthesised Speech Commands-layout data, MFCC front end, LSTM classifier
registered as ``kws-lstm``, training through the shared Trainer, evaluation, and streaming detection.

The synthesiser (:mod:`pipelines.kws.synth`: espeak-ng, flite, Festival, piper) is imported only when one of its names
is used: reading a dataset or running a model never loads it."""
from . import model  # noqa: F401 - registers "kws-lstm"
from .data import PRESETS, make_labels, scan_dataset
from .model import KWSLSTM
from .stream import DetectConfig, StreamingDetector, detect, score_detections
from .train import KWSConfig, evaluate_checkpoint, predict_files, train

_SYNTH = ("SynthConfig", "make_long_recording", "synthesize")


def __getattr__(name):
    if name in _SYNTH:
        from . import synth

        return getattr(synth, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KWSLSTM", "KWSConfig", "DetectConfig", "StreamingDetector", "SynthConfig", "PRESETS", "detect",
           "evaluate_checkpoint", "make_labels", "make_long_recording", "predict_files", "scan_dataset",
           "score_detections", "synthesize", "train"]
