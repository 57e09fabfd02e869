"""The error family: every error meant for a user derives from :class:`WsiRobustError`.

Its message is a sentence a pathologist can act on; the docks show it in their status line and the
command line prints it, neither with a traceback. Any other exception is a bug and is reported as an
internal error with its traceback in the log (:func:`user_message`, :func:`is_user_error`).
"""

from __future__ import annotations

import sys

__all__ = ["InputError", "WsiRobustError", "is_user_error", "user_message"]


class WsiRobustError(Exception):
    """Base of every error whose message is meant for the user."""


class InputError(WsiRobustError, ValueError):
    """A setting, argument or input file the user gave is out of range, unknown or malformed."""


def is_user_error(exc: BaseException) -> bool:
    """True for errors whose message is for the user (the family, and running out of memory)."""
    return isinstance(exc, (WsiRobustError, MemoryError)) or _is_gpu_out_of_memory(exc)


def _is_gpu_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # never imported: no GPU was used, and an error costs no import
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def user_message(exc: BaseException) -> str:
    """A message a pathologist can act on: the family's own text, or what to do about running out of
    memory; anything else is named as an internal error (its traceback belongs in the log)."""
    if _is_gpu_out_of_memory(exc):
        return (
            "The GPU ran out of memory. Choose the CPU device, analyse a smaller region, or close "
            "other programs using the GPU."
        )
    if isinstance(exc, MemoryError):
        return "Out of memory: analyse a smaller region."
    text = str(exc).strip()
    if isinstance(exc, WsiRobustError):
        return text or type(exc).__name__
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"Internal error ({detail}); the details are in the log."
