"""asyncssh, imported once with one known third-party warning silenced.

cryptography 47 and later deprecate DSA and warn when asyncssh (which still offers ssh-dss keys) imports its
DSA support. Conveyor never offers or accepts DSA keys (OpenSSH dropped them in 9.8), so the warning says
nothing to our users; it would print on every `conveyor` start and, under the test suite's warnings-as-errors,
fail collection. Only that warning, from that import, is silenced: any other warning still shows.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"DSA is deprecated", category=CryptographyDeprecationWarning)
    import asyncssh

__all__ = ["asyncssh"]
