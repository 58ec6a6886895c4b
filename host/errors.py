# SPDX-License-Identifier: BSD-3-Clause
"""Errors a user can act on. The CLI prints ``str(error)`` on one line and exits non-zero."""

__all__ = ["TernedgeError", "CheckpointError", "ConfigurationError", "InputError"]


class TernedgeError(Exception):
    """Base of every error ternedge reports to a user; the message names the problem and the fix."""


class CheckpointError(TernedgeError):
    """A checkpoint is missing, corrupt, truncated, or does not match its config."""


class ConfigurationError(TernedgeError):
    """A config.json or accelerator configuration is missing fields or out of range."""


class InputError(TernedgeError):
    """A prompt, sampling argument or other run-time input is invalid."""
