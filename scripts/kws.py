#!/usr/bin/env python
"""Thin wrapper: ``python scripts/kws.py ...`` == ``lstm-media kws ...``."""
import sys

from pipelines.kws.cli import main

if __name__ == "__main__":
    sys.exit(main())
