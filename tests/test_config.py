"""Every config survives to_dict -> JSON -> from_dict unchanged (tuples and nested configs included)."""
import json

import pytest

from encoders.audio import AugmentConfig, FeatureConfig
from encoders.midi import MidiVocabConfig
from encoders.video import FrameCNNConfig, VideoFrontEndConfig
from pipelines.kws.stream import DetectConfig
from pipelines.kws.synth import SynthConfig
from pipelines.kws.train import KWSConfig
from pipelines.music.data import PianoRollConfig
from pipelines.music.train import MusicTrainConfig
from pipelines.trainer import TrainConfig
from pipelines.video.train import VideoTrainConfig

CONFIGS = [FeatureConfig, AugmentConfig, MidiVocabConfig, VideoFrontEndConfig, FrameCNNConfig, DetectConfig,
           SynthConfig, KWSConfig, PianoRollConfig, MusicTrainConfig, TrainConfig, VideoTrainConfig]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_config_round_trip_through_json(cls):
    cfg = cls()
    d = json.loads(json.dumps(cfg.to_dict()))
    assert cls.from_dict(d) == cfg


def test_nested_and_tuple_fields_come_back_typed():
    cfg = KWSConfig(words=("yes", "no"))
    back = KWSConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.words == ("yes", "no") and isinstance(back.augment, AugmentConfig)
    assert TrainConfig.from_dict({"betas": [0.8, 0.9]}).betas == (0.8, 0.9)


def test_unknown_setting_is_one_clear_error():
    from encoders.config import ConfigError

    d = KWSConfig().to_dict()
    d["label_smoothing"] = 0.1  # a checkpoint of a version with a setting this one lacks
    with pytest.raises(ConfigError, match=r"KWSConfig: unknown setting label_smoothing \(written by another version"):
        KWSConfig.from_dict(d)
