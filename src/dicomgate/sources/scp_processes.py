"""The ``dicom_receiver`` settings block: how many processes serve the DICOM port."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


class ReceiverProcesses(BaseModel):
    """How many processes accept associations on the DICOM port.

    Parameters
    ----------
    processes
        Receiving processes, this one included; 0 means one per CPU core.
    """

    model_config = ConfigDict(extra="forbid")

    processes: int = Field(default=0, ge=0, le=64)

    def count(self) -> int:
        """Return the number of receiving processes: ``processes``, or one per core when 0."""
        return self.processes or os.cpu_count() or 1
