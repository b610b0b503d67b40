"""One error type for everything a user can get wrong.

Scripts catch :class:`GankdError` and print its message on one line with exit code 2,
so bad input never ends in a bare traceback.
"""


class GankdError(Exception):
    """A user-facing error: bad flags, missing files, mismatched weights."""


class DivergenceError(GankdError):
    """A loss became NaN or infinite during training."""
