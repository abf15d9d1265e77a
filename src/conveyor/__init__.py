"""Conveyor: configuration-driven continuous deployment to fleets of servers.

`import conveyor` stays cheap: the CLI, the state store and the transports load where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
