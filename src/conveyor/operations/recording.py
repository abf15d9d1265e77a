"""The state store as an event subscriber: host outcomes, what each host runs, region pointers."""

from __future__ import annotations

from conveyor.engine.events import Event
from conveyor.engine.results import HostOutcome
from conveyor.state.store import Store


class StoreRecorder:
    """Keeps the store in step with what hosts report during a deployment."""

    def __init__(self, store: Store, environment: str, deployment_id: int) -> None:
        self.store = store
        self.environment = environment
        self.deployment_id = deployment_id

    def __call__(self, event: Event) -> None:
        """Record the events that change what runs where."""
        if event.kind == "host_finished":
            outcome: HostOutcome = event.data["outcome"]
            host = outcome.host
            self.store.record_host_result(self.deployment_id, outcome.to_json())
            if outcome.status != "pending":
                self.store.set_host_release(self.environment, host.name, host.region, host.role, outcome.release)
        elif event.kind == "measurement":
            self.store.record_measurement(self.deployment_id, event.data["phase"],
                                          event.data["measurement"].to_json())
        elif event.kind == "deployment_finished":
            # Hosts never reached (a halted region, a skipped wave) are part of the record too.
            for region in event.data["result"].regions:
                for pending in region.hosts:
                    if pending.status == "pending":
                        self.store.record_host_result(self.deployment_id, pending.to_json())
        elif event.kind == "region_finished" and event.data.get("status") == "succeeded":
            release = event.data.get("release")
            if release:
                self.store.set_pointer(self.environment, event.data["region"], release, self.deployment_id)
