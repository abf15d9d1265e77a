"""The state store: what was deployed where, by whom, and who holds each environment.

    store.py     Store, the one object callers use: releases, deployments and host results, measurements,
                 what each host runs, migrations, pointers, approvals, the audit trail
    components.py the stack hosts run on: each host's components as last probed, per deployment too
    locks.py     environment locks and the leases they grant, with fencing tokens (Store inherits them)
    engine.py    opening the database for a URL, bringing old stores up to date, transactions and errors
    clock.py     this machine's clock for what records say, the database's for leases
    tables.py    the tables (SQLAlchemy Core)
    liveness.py  whether a lock holder's process on this machine is still the one that took it
"""
