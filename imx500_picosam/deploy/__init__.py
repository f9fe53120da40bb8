"""Putting firmware on a Raspberry Pi and checking the machine: SSH flashing (``flash``, and
``flash_remote``, which runs on the Pi), the on-sensor smoke test (``smoke``) and ``doctor``.
``flash_remote``, ``smoke`` and this file travel to the Pi in the flash bundle: they import the
standard library, the ground floor's ``errors``/``atomic`` and ``firmware.package`` only."""
