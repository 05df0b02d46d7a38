# -*- coding: utf-8 -*-
# Copyright (c) edge-llama contributors
# Apache License 2.0 (see LICENSE)
"""Small parsers the modules share: numbers from tools' and servers' text, text on one line."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def int_or_none(value):
    """An integer from what a tool printed ("46068", "46068.0", 12) or None ("[N/A]", "", None)."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def one_line(text):
    """text with every run of white space (newlines too) folded into one space."""
    return " ".join((text or "").split())
