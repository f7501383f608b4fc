"""The one base class of the toolkit's user errors.

Every error that a user's input can cause (a config key, a corpus line, a store, a run folder,
a sweep file) derives from :class:`UserError`. The command line turns exactly these into a
one-line message and exit code 2 (``multiemo.cli``); anything else is a bug and keeps its
traceback.
"""

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input, named in the message (file, line, key or id)."""
