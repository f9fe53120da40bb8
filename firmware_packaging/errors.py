"""Errors of the RPK tools, which stand on their own (they import nothing of imx500_picosam).

:class:`UserError` is the base of every failure a user can cause and read in one line: a
corrupt package, an unreadable intrinsics file. ``imx500_picosam.errors.PicosamError``
derives from it, so one ``except UserError`` (the ``picosam`` command line's) turns both
packages' errors into ``error: <one line>``, while this package needs nothing above it.
"""


class UserError(Exception):
    """A user-facing failure whose message is one self-explanatory line."""


class RpkError(UserError):
    """An IMX500 network package (or its intrinsics) that cannot be read, validated or written."""
