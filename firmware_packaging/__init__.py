"""Reading, inspecting and rewriting Sony IMX500 network packages (``.rpk``) in pure Python.

``cpio`` handles the newc archive at the end of a package, ``rpk`` the package itself
and ``cli`` the ``rpk`` command group.
"""
