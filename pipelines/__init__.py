"""lstm-media pipelines: one sub-package per job (``kws``, ``video``, ``music``, ``long_memory``) plus
what they share: the trainer, the model registry, the bundle (one checkpoint schema, one loader) and
the ``lstm-media`` command.  Importing ``pipelines`` registers every model, so the registry is complete.
"""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:  # must precede torch's import to take effect
    # OpenMP threads that spin while waiting slow everything down badly (10x) when the cores are
    # shared.  Waiting passively has a price on an idle machine: small parallel steps gain little from a
    # second thread (a kws training step: 78-109 ms on two threads, ~76-86 on one, 44-49 spinning; the
    # kws trainer gives the other core to a data worker instead; README, issue #13)
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import registry  # noqa: E402
from .bundle import BundleError, load  # noqa: E402

# every job's models register themselves on import; after this line the registry is complete
from .kws import model as _kws_model  # noqa: E402,F401
from .video import models as _video_models  # noqa: E402,F401
from .music import models as _music_models  # noqa: E402,F401
from . import long_memory as _long_memory  # noqa: E402,F401

__all__ = ["BundleError", "load", "registry"]
