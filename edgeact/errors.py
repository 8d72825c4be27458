"""Errors that name the cause and the fix.

Every error edgeact raises on bad input is an `EdgeActError` (or a subclass), whose message says
what was wrong and what to do about it; the CLI prints it without a traceback.
"""


class EdgeActError(Exception):
    """Base class: bad input or an unmet requirement, with a message that says the fix."""


class QuantizationError(EdgeActError, ValueError):
    """Invalid quantization parameters or data (zero/negative/NaN scale, NaN input, empty range)."""


class UnsupportedError(EdgeActError):
    """A module, op or activation that edgeact cannot handle on the requested path."""


class ExportError(EdgeActError):
    """An export that cannot be written or that the runtime refuses."""


class ModelFileError(EdgeActError):
    """A model file that is missing, corrupt, truncated or of an unknown format."""


class TargetError(EdgeActError):
    """A target (QEMU, sysroot, board) that is missing, broken or unreachable."""
