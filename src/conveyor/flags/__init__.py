"""Feature flags, rolled out like releases: the pure model.

    definitions.py  a flag file in flagd's format (JSON or YAML), validated against schema.json
    effective.py    the flags a region sees (file, conveyor.yml's overrides, `flags set`'s) and the flagd
                    document written to its hosts
    schema.json     the part of flagd's flag-definition format Conveyor accepts, with its own keys

How a change reaches hosts is operations/flagging.py (a deployment of kind `flags`) and engine/flagging.py
(one round trip per host); gates/flags.py refuses what a flag's requirements forbid.
"""

from conveyor.flags.definitions import Flag, FlagSet, load_flags, parse_flags
from conveyor.flags.effective import (
    FlagFacts,
    Layer,
    Overrides,
    Resolved,
    Setting,
    changed_flags,
    check_overrides,
    digest,
    document,
    encode,
    resolve,
    set_override,
    switched_on,
)

__all__ = ["Flag", "FlagFacts", "FlagSet", "Layer", "Overrides", "Resolved", "Setting", "changed_flags",
           "check_overrides", "digest", "document", "encode", "load_flags", "parse_flags", "resolve", "set_override",
           "switched_on"]
