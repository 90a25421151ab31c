"""Pure translation of row changes into domain events (see :mod:`cdc.translate.core`)."""

from cdc.translate.core import (
    UNAVAILABLE,
    Change,
    TranslationError,
    decode_row,
    decode_value,
    generic_names,
    to_change,
    translate,
)

__all__ = [
    "UNAVAILABLE",
    "Change",
    "TranslationError",
    "decode_row",
    "decode_value",
    "generic_names",
    "to_change",
    "translate",
]
