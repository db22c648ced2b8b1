"""The package logger. Library code logs; it never prints."""

from __future__ import annotations

import logging

logger = logging.getLogger("cradlekit")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(levelname)s [cradlekit] %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
