"""Video pipeline: rendered default data (shapes, Moving-MNIST-style digits), UCF101-style readers,
CNN-LSTM / ConvLSTM / single-frame classifiers, an S2VT-style captioner and a ConvLSTM encoder–forecaster
for future frames (registered as "video-cnn-lstm", "video-convlstm", "video-frame", "video-caption",
"video-predict-convlstm"), frame encoders by name (small CNN or any torchvision classifier, frozen with
cached features), training wiring, evaluation, labelling, captioning and prediction.

Modules: ``synth`` (renderer), ``data`` (readers, caching, data sets, vocabulary), ``models``,
``train`` (bundles of kind "video-classify" / "video-caption"), ``predict`` (kind "video-predict"),
``metrics`` (BLEU-4/CIDEr/METEOR/exact match; MSE/SSIM), ``infer`` (eval, label, --segment, caption),
``demo``, ``cli`` (``lstm-media video``) and ``ship`` (the recipe of the shipped models).
"""
from . import models  # noqa: F401 - registers the video models by name
