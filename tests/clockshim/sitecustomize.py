"""A test-only clock for the `conveyor` processes a test starts: it is loaded only when a test puts this
directory on PYTHONPATH. The product has no way to fake its clock for a deploy (issue 15, point 9); tests
that need a window open or closed at a given moment fix `conveyor.gates.windows.now` here instead.

CONVEYOR_TEST_NOW=ISO-8601       the clock stands at that moment for the whole run;
CONVEYOR_TEST_CLOCK_FILE=PATH    the moment is read from that file each time a window is evaluated (a host's
                                 restart can move the clock mid-deployment).
"""

import os

_FIXED = os.environ.get("CONVEYOR_TEST_NOW")
_FILE = os.environ.get("CONVEYOR_TEST_CLOCK_FILE")
if _FIXED or _FILE:
    from datetime import UTC

    import conveyor.gates.windows as _windows

    def _now():  # type: ignore[no-untyped-def]
        text = _FIXED
        if _FILE:
            with open(_FILE, encoding="utf-8") as handle:
                text = handle.read().strip()
        return _windows.parse_at(text, UTC)

    _windows.now = _now
