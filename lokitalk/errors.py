"""Errors that a user can act on. The CLI prints them as one line and exits non-zero."""


class LokiTalkError(Exception):
    """Base class: the message is the whole user-facing explanation, on one line."""

    exit_code = 2


class InputError(LokiTalkError):
    """The input file or folder is unusable (not a video, no face, too short, ...)."""


class ConfigError(LokiTalkError):
    """An option or a combination of options makes no sense."""
