"""Import every module of the conveyor package; run with `python -W error` so any warning at import fails CI.

A third-party warning raised while importing (a deprecation in a dependency the lock moved to) shows up here on
its own line, before the test suite turns it into a confusing collection error.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import conveyor


def main() -> int:
    names = [conveyor.__name__]
    names += [info.name for info in pkgutil.walk_packages(conveyor.__path__, prefix="conveyor.")]
    failed = 0
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - report every module, then fail
            failed += 1
            print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr)
    print(f"{len(names) - failed} of {len(names)} modules imported cleanly")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
