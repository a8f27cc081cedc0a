"""Errors a user can cause. The CLI prints their message as one line and exits non-zero."""


class SatsrError(Exception):
    """A user-facing error: bad path, wrong band count, missing weights, corrupt file...

    The message must be one line that says what is wrong and, where possible, what to do.
    """

    exit_code = 2


class MissingWeightsError(SatsrError):
    """Pretrained backbone weights (VGG19, AlexNet, ...) are not on this machine."""
