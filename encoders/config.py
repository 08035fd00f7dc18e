"""One way for every frozen dataclass config to become a plain dict and back (JSON files, checkpoints
read with ``weights_only=True``)."""
from __future__ import annotations

from dataclasses import MISSING, fields


def _default(f):
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


class ConfigError(ValueError):
    """A saved config (a checkpoint's task, a JSON file) names settings this version does not have."""


class DictConfig:
    """Mixin for dataclass configs: ``to_dict()`` gives plain Python (tuples as lists, nested configs as
    dicts); ``from_dict()`` restores tuples and nested configs from the field defaults and types."""

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, DictConfig):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:  # a file written by another version: say so, not a TypeError from the constructor
            raise ConfigError(f"{cls.__name__}: unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                              "(written by another version of lstm-media?)")
        for f in fields(cls):
            if f.name not in d:
                continue
            v, default = d[f.name], _default(f)
            if isinstance(default, DictConfig) and isinstance(v, dict):
                d[f.name] = type(default).from_dict(v)
            elif isinstance(v, list) and (isinstance(default, tuple) or str(f.type).startswith("tuple")):
                d[f.name] = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        return cls(**d)
