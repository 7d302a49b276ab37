"""Argument checks shared by the library's classes, with messages that name the argument and its value.

Kept free of TensorFlow and Keras imports, so any module may use them.
"""

from __future__ import annotations


def check_positive_int(name: str, value) -> None:
    """Raise ValueError naming the argument unless `value` is an int >= 1 (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
