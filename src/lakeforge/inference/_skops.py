"""Imported by the scoring fork server: ``skops.io`` without PyTorch, once for all workers."""

from lakeforge.inference._load import import_skops

import_skops()
