"""Consistency metrics, from what hosts last said of their stack (the state store):

    conveyor_component_info{app,environment,region,role,component,value}   gauge: how many of the region's
                                                                                  hosts of the role run it
    conveyor_component_drift{app,environment}                              gauge: drift findings now (hosts
                                                                                  of a role that disagree, the
                                                                                  build's values, match envs)

`count by (environment, component) (count by (environment, component, value) (conveyor_component_info))`
above 1 is a component whose hosts disagree; `conveyor_component_drift > 0` is what to alert on.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from conveyor.gates.consistency import survey
from conveyor.metrics.exposition import Family

if TYPE_CHECKING:
    from conveyor.config.models import Consistency
    from conveyor.state.store import Store


def collect_stack(store: Store, app: str, environments: list[str], consistency: Consistency | None) -> list[Family]:
    """The consistency families of `app` for these environments (none without `consistency:`)."""
    if consistency is None:
        return []
    info = Family("conveyor_component_info", "gauge", "Hosts running each value of a component (consistency), "
                  "by environment, region and role, as they last said.")
    drift = Family("conveyor_component_drift", "gauge", "Drift findings in the environment: hosts of a role that "
                   "disagree, hosts unlike the build, environments in match that differ.")
    found = survey(store, consistency, environments)
    for env in environments:
        counts = Counter((a.region, a.role, a.component, a.value) for a in found.answers[env] if a.value is not None)
        for (region, role, component, value), hosts in sorted(counts.items()):
            info.add(hosts, app=app, environment=env, region=region, role=role, component=component, value=value)
        shared = len(found.across) if env in consistency.match else 0
        drift.add(len(found.findings[env]) + shared, app=app, environment=env)
    return [info, drift]
