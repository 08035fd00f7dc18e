#!/usr/bin/env python
"""Thin wrapper: ``python scripts/video.py ...`` == ``lstm-media video ...``."""
import sys

from pipelines.video.cli import main

if __name__ == "__main__":
    sys.exit(main())
