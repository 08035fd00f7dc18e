#!/usr/bin/env python
"""Thin wrapper: ``python scripts/make_models.py`` == ``make models`` (retrain every shipped model)."""
import sys

from pipelines.shipping import main

if __name__ == "__main__":
    sys.exit(main())
