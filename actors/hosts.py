"""Model hosts: the GPU actors that hold a loaded model, kept warm across the cells that share it.

Cells of one model at one precision differ only in prompt and generation settings, so they share one
load: a trial borrows a host set (`replicas` actors of `CaptionStage`) from the sweep's `HostPool`,
captions through it, and gives it back. The pool keeps an idle set until its GPUs are needed for another
model, then stops it (least recently used first). Trials are ordered by `order_for_reuse` so that cells
running side by side use different models and each GPU's next cell tends to find its model loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sweep.cells import Cell


def load_key(cell: Cell) -> str:
    """Everything that changes what a host loads, and how it is placed; nothing of generation."""
    return json.dumps({
        "model": cell.model.model_dump(mode="json"),
        "precision": cell.precision,
        "backend": cell.backend,
        "gpus_per_actor": cell.gpus_per_actor,
        "replicas": cell.replicas,
    }, sort_keys=True)


def order_for_reuse(cells: list[Cell], slots: int) -> list[Cell]:
    """Trial order: the cells of each model kept together in one of `slots` lanes (the cells that run at
    once), lanes balanced by cell count and interleaved, so concurrent trials rarely want the same model
    (which would load it twice) and a lane's next cell finds its model still loaded."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(load_key(cell), []).append(cell)
    lanes: list[list[Cell]] = [[] for _ in range(max(1, slots))]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(lanes, key=len).extend(group)
    ordered = []
    for i in range(max(map(len, lanes))):
        ordered += [lane[i] for lane in lanes if i < len(lane)]
    return ordered


@dataclass
class HostSet:
    set_id: int
    key: str
    gpus: float
    hosts: list[Any]
    users: int = 0
    last_used: int = 0


class HostPool:
    """A Ray actor shared by the sweep's trials: which host sets live, who uses them.

    acquire() hands out an idle set of the cell's model; else starts another one where GPUs are free;
    else shares a busy set of the same model (the cells' batches then take turns on the same actors, and
    their peak memory is the set's); else stops idle sets of other models, least recently used first,
    until the new set fits. A set whose cell failed is stopped: the next cell gets a fresh load.
    """

    def __init__(self, gpu_budget: float, energy_country: str | None, accelerator_type: str | None):
        self.budget = gpu_budget
        self.energy_country = energy_country
        self.accelerator_type = accelerator_type
        self.sets: dict[int, HostSet] = {}
        self.clock = 0
        self.loads = 0

    def _used(self) -> float:
        return sum(s.gpus for s in self.sets.values())

    def _stop(self, host_set: HostSet) -> None:
        import ray

        for host in host_set.hosts:
            ray.kill(host)
        del self.sets[host_set.set_id]

    def _start(self, key: str, cell: Cell) -> HostSet:
        import ray

        from actors.stage import CaptionStage

        host_class = ray.remote(CaptionStage).options(
            num_gpus=cell.gpus_per_actor,
            # GPU actors must not hold a CPU: on small machines that silently idles logical GPUs
            num_cpus=0,
            # a dead host is restarted (the model loaded again) and its batch retried
            max_restarts=2,
            max_task_retries=2,
            # Ray's own accelerator label: requires the node resource "accelerator_type:<name>"
            accelerator_type=self.accelerator_type,
        )
        cell_json = cell.model_dump_json()
        hosts = [host_class.remote(cell_json, self.energy_country) for _ in range(cell.replicas)]
        self.loads += 1
        host_set = HostSet(self.loads, key, cell.gpus_per_actor * cell.replicas, hosts)
        self.sets[host_set.set_id] = host_set
        return host_set

    def acquire(self, cell_json: str) -> tuple[int, list[Any]]:
        cell = Cell.model_validate_json(cell_json)
        key = load_key(cell)
        need = cell.gpus_per_actor * cell.replicas
        same = [s for s in self.sets.values() if s.key == key]
        host_set = next((s for s in same if s.users == 0), None)
        if host_set is None and self._used() + need > self.budget + 1e-9 and same:
            # sharing a busy load beats stopping another model to load this one a second time
            host_set = min(same, key=lambda s: s.users)
        if host_set is None:
            while self._used() + need > self.budget + 1e-9:
                idle = [s for s in self.sets.values() if s.users == 0]
                if not idle:
                    break  # Ray queues the new hosts until a busy set is released
                self._stop(min(idle, key=lambda s: s.last_used))
            host_set = self._start(key, cell)
        self.clock += 1
        host_set.users += 1
        host_set.last_used = self.clock
        return host_set.set_id, host_set.hosts

    def release(self, set_id: int, healthy: bool) -> None:
        host_set = self.sets.get(set_id)
        if host_set is None:
            return
        host_set.users -= 1
        if not healthy:
            self._stop(host_set)

    def stats(self) -> dict[str, int]:
        """Model loads started so far and host sets alive now."""
        return {"loads": self.loads, "alive": len(self.sets)}

    def shutdown(self) -> None:
        for host_set in list(self.sets.values()):
            self._stop(host_set)
