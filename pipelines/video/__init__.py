"""Video pipeline: rendered default data, UCF101-style readers, CNN-LSTM / ConvLSTM / single-frame
classifiers and an S2VT-style captioner (registered as "video-cnn-lstm", "video-convlstm",
"video-frame", "video-caption"), training wiring, evaluation, labelling and captioning.

Modules: ``synth`` (renderer), ``data`` (readers, caching, data sets, vocabulary), ``models``,
``train`` (bundles of kind "video-classify" / "video-caption"), ``metrics`` (BLEU-4/CIDEr/METEOR/exact
match), ``infer`` (eval, label, --segment, caption), ``demo``, ``cli`` (``lstm-media video``) and ``ship``
(the recipe of the shipped models).
"""
from . import models  # noqa: F401 - registers the video models by name
