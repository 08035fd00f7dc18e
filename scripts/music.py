#!/usr/bin/env python
"""Thin wrapper: ``python scripts/music.py ...`` == ``lstm-media music ...``."""
import sys

from pipelines.music.cli import main

if __name__ == "__main__":
    sys.exit(main())
