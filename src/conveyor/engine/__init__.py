"""The engine: moves hosts to a release, wave by wave, and reports every step as a typed event.

- plan.py cuts hosts into waves, regions, roles and batches (pure); limits.py, the timeouts and concurrency.
- rollout.py runs a plan (`Rollout`, given a `RolloutSpec` from spec.py), with its parts: moving.py (one
  host's move), switching_back.py (switching back, halting a region), membership.py (hosts that join or
  leave mid-region), bakes.py (watching waves and canaries), stopping.py (a stop from any thread), and
  connections.py (one connection per host). survey.py reads many hosts at once, for `status`.
- commands.py builds host commands as data from scripts/*.sh; exits.py names their exit codes; probe.py
  reads what a host says back; checking.py is a host as its checks reach it.
- events.py holds the events and the bus; results.py the outcomes, per host, region and deployment.
"""
