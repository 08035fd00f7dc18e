#!/usr/bin/env python
"""Thin wrapper: ``python scripts/long_memory.py ...`` == ``lstm-media long-memory ...``."""
import sys

from pipelines.long_memory.cli import main

if __name__ == "__main__":
    sys.exit(main())
