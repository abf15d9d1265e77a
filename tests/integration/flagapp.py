"""A tiny application that reads its feature flags with OpenFeature's Python SDK and the flagd provider in file
mode (in-process, offline flag source path): the way an app on a host reads the flags file Conveyor writes.

    python flagapp.py FLAGS_FILE

Prints `pid=PID` once, then `new-checkout=BOOL banner=TEXT` at start, whenever the provider reports that the
flags changed, and whenever a line arrives on stdin. It never restarts: the provider reloads the file.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.event import ProviderEvent


def main(path: str) -> None:
    # In file mode the provider looks at the file's modification time every deadline_ms.
    api.set_provider(FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=path, deadline_ms=100))
    client = api.get_client()

    def show(*_: Any) -> None:
        print(f"new-checkout={client.get_boolean_value('new-checkout', False)} "
              f"banner={client.get_string_value('banner', '?')}", flush=True)

    print(f"pid={os.getpid()}", flush=True)
    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, show)
    show()
    for _line in sys.stdin:
        show()


if __name__ == "__main__":
    main(sys.argv[1])
