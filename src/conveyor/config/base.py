"""What every model of `conveyor.yml` shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are not coerced across types silently."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
