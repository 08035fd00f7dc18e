"""Keyword spotting: offline synthesised Speech Commands-layout data, MFCC front end, LSTM classifier
registered as ``kws-lstm``, training through the shared Trainer, evaluation, and streaming detection."""
from . import model  # noqa: F401 - registers "kws-lstm"
from .data import PRESETS, make_labels, scan_dataset
from .model import KWSLSTM
from .stream import DetectConfig, StreamingDetector, detect, score_detections
from .synth import SynthConfig, make_long_recording, synthesize
from .train import KWSConfig, evaluate_checkpoint, load_model, predict_files, train

__all__ = ["KWSLSTM", "KWSConfig", "DetectConfig", "StreamingDetector", "SynthConfig", "PRESETS", "detect",
           "evaluate_checkpoint", "load_model", "make_labels", "make_long_recording", "predict_files",
           "scan_dataset", "score_detections", "synthesize", "train"]
