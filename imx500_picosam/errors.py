"""The one exception type users see.

Every problem a user can cause (a missing checkpoint, a corrupt RPK, a box outside the
frame, a converter that refuses the graph) is raised as :class:`PicosamError` with a
single line naming the file or value and what is wrong. The CLI prints that line and
exits non-zero instead of showing a traceback.

The RPK tools in ``firmware_packaging`` stand below this package and raise their own
:class:`~firmware_packaging.errors.RpkError`; both derive from
:class:`~firmware_packaging.errors.UserError`, which is what code catches when it means
"any one-line failure", RPK problems included (the CLI, the flash and smoke-test scripts).
"""

from firmware_packaging.errors import RpkError, UserError

__all__ = ["PicosamError", "RpkError", "UserError"]


class PicosamError(UserError):
    """A user-facing failure whose message is one self-explanatory line."""
