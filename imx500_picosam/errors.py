"""The one exception type users see.

Every problem a user can cause (a missing checkpoint, a corrupt RPK, a box outside the
frame, a converter that refuses the graph) is raised as :class:`PicosamError` with a
single line naming the file or value and what is wrong. The CLI prints that line and
exits non-zero instead of showing a traceback.
"""


class PicosamError(Exception):
    """A user-facing failure whose message is one self-explanatory line."""
