"""The data package's user-facing error."""

from xent_lab.errors import XentError


class DataError(XentError):
    """A dataset cannot be loaded; the message says which file or setting is wrong and how to fix it."""
