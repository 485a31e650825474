"""What the sections of one run share: quick or full counts, the scratch folder, the local world."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.common import STATE_DIR, progress
from bench.world import LocalWorld


@dataclass
class Context:
    """Started lazily, stopped once by :meth:`close` (``run`` calls it in a ``finally``)."""

    quick: bool
    #: How the e2e section's stack is told about new objects: ``queue`` or ``lambda`` (see bench/e2e.py).
    e2e_notify: str = "queue"
    state_dir: Path = STATE_DIR
    _world: LocalWorld | None = field(default=None, repr=False)

    @property
    def function_log(self) -> Path:
        """Where the in-process handler's log lines and metrics go."""
        return self.state_dir / "function.log"

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def world(self) -> LocalWorld:
        """ministack + the emulator process for the in-process sections, started at first use."""
        if self._world is None:
            progress("starting ministack and the kie.ai emulator")
            self._world = LocalWorld.start(self.state_dir)
        return self._world

    def close(self) -> None:
        if self._world is not None:
            self._world.stop()
            self._world = None
