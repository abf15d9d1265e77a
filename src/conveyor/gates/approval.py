"""The approval gate: an environment with `approval: required` moves only on a request another person approved.

A deploy that names no request holds with `ApprovalNeeded`; the operation then records a request (the one
gate whose holding writes something) and says its number. An approval named with `--request` is checked
wherever it is used: one approved for an environment, a release or some regions must not be spent (or
honoured) by a deploy of another.
"""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.errors import HeldError
from conveyor.gates.base import GateContext, GateVerdict

NAME = "approval"


class ApprovalNeeded(HeldError):
    """No approval was named for an environment that needs one: a deploy records a request."""


def check(context: GateContext) -> GateVerdict | None:
    """Closed until the named request is approved, unused, unexpired and covers this release and these
    regions. Deploys of a known release only, where approval is required or a request is named."""
    release, env, number = context.release, context.environment, context.approval
    if context.kind != "deploy" or release is None or (context.settings.approval != "required" and number is None):
        return None
    if number is None:
        return _closed(ApprovalNeeded(f"{env} needs approval: a deploy records a request for {release} that "
                                      "another person approves (`conveyor approve ID`)"))
    record = context.ledger.approval(number)
    if record is None or record["environment"] != env:
        return _closed(HeldError(f"no approval request #{number} for {env}"))
    if record["release"] != release:
        return _closed(HeldError(f"approval #{number} is for {record['release']}, not {release}"))
    regions = context.requested_regions or tuple(context.settings.regions)
    outside = [r for r in regions if r not in record["regions"]]
    if outside:
        return _closed(HeldError(f"approval #{number} covers {', '.join(record['regions'])}, not "
                                 f"{', '.join(outside)}; request a new one for those regions"))
    if record["used_by"] is not None:
        return _closed(HeldError(f"approval #{number} was already used by deployment #{record['used_by']}"))
    if record.get("denied_by"):
        return _closed(HeldError(f"approval #{number} was denied by {record['denied_by']}: {record.get('denial')}; "
                                 "request a new one"))
    # Expired before "not approved yet": approving an expired request would be refused anyway. Expiry is
    # real time, whatever moment the windows are judged at.
    if datetime.fromisoformat(record["expires_at"]) < datetime.now(UTC):
        return _closed(HeldError(f"approval #{number} expired at {record['expires_at']}; request a new one"))
    if record["approved_by"] is None:
        return _closed(HeldError(f"approval #{number} has not been approved yet (`conveyor approve {number}` by "
                                 f"someone other than {record['requested_by']})"))
    return GateVerdict(NAME, open=True, detail=f"approval #{number} by {record['approved_by']}", listed=False)


def _closed(refusal: HeldError) -> GateVerdict:
    return GateVerdict(NAME, open=False, detail=refusal.message, refusal=refusal, listed=False)
