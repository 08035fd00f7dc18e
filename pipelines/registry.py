"""Model registry: build any pipeline's model by name, so scripts never branch on model names."""
from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str | None = None):
    """Decorator registering a model builder (a class or a function taking keyword arguments)."""

    def wrap(fn):
        key = name or fn.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = fn
        return fn

    return wrap


def get_model(name: str, **config) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``config``."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models()) or 'none'}")
    return _MODELS[name](**config)


def list_models(prefix: str = "") -> list[str]:
    return sorted(k for k in _MODELS if k.startswith(prefix))
