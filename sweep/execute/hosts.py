"""Model hosts: the GPU actors that hold a loaded model, kept warm across the cells that share it.

Cells of one model at one precision differ only in prompt and generation settings, so they share one
load (one `LoadSpec`): a trial borrows a host set (`replicas` actors of `ModelHost`) from the sweep's
`HostPool`, captions through it, and gives it back. The pool keeps an idle set until its GPUs are needed
for another model; then an idle set of the same placement whose processes can unload in-process serves the
new load (`resources.reuse_host_processes`: a host process costs ~8 CPU-s of `import torch, transformers`
and the imports a first load triggers), else it is stopped (least recently used first) and a fresh one
started. Ray is imported only when a pool acts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from actors.contract import CellStart, LoadSpec, ModelHostApi
from actors.precision import VLLM_PRECISIONS

P = ParamSpec("P")
R = TypeVar("R")


def call_host(host: Any, method: Callable[Concatenate[ModelHostApi, P], R], *args: P.args,
              **kwargs: P.kwargs) -> Any:
    """`host.<method>.remote(*args)` on a model host's Ray handle, `method` one of
    `actors.contract.ModelHostApi`'s (e.g. `ModelHostApi.begin_cell`): a type checker checks the
    arguments against the contract, and a method the host does not declare fails here by name. Returns
    the Ray object ref of the method's result."""
    if not hasattr(ModelHostApi, method.__name__):
        raise TypeError(f"{method.__name__} is not a method of actors.contract.ModelHostApi")
    return getattr(host, method.__name__).remote(*args, **kwargs)

#: restarts of a model host whose process or node died, and retries of the batch it was serving
HOST_RETRIES = 2


@dataclass
class HostSet:
    set_id: int
    key: LoadSpec
    gpus: float
    hosts: list[Any]
    users: int = 0
    last_used: int = 0
    # what its hosts said when a cell began on them (`CellStart`): every one can drop its model and take
    # another in-process; any one's machine lets backend auto pick vLLM
    unloads_in_process: bool = False
    vllm_here: bool = False


def may_take(host_set: HostSet, spec: LoadSpec) -> bool:
    """Whether an idle host set's processes may unload their model and load `spec` in its place: same
    placement (GPUs per actor, replicas; the accelerator type is the pool's), every host's captioner
    unloads in-process (not vLLM), and `spec` does not ask for vLLM, by name or through auto on a machine
    where auto would pick it for that precision (a user's loader chooses its own backend)."""
    same_place = (host_set.key.gpus_per_actor, host_set.key.replicas) == (spec.gpus_per_actor, spec.replicas)
    vllm = spec.model.loader is None and (spec.backend == "vllm" or (
        spec.backend == "auto" and host_set.vllm_here and spec.precision in VLLM_PRECISIONS))
    return host_set.users == 0 and same_place and host_set.unloads_in_process and not vllm


class HostPool:
    """A Ray actor shared by the sweep's trials: which host sets live, who uses them.

    acquire() hands out an idle set of the cell's model; else starts another one where GPUs are free;
    else shares a busy set of the same model (the cells' batches then take turns on the same actors, and
    their peak memory is the set's); else stops idle sets of other models, least recently used first,
    until the new set fits; with `reuse_processes`, an idle set that `may_take` the new load is handed the
    new load instead (the trial's first call names it: `ModelHostApi`'s `load=`). A set whose cell
    failed is stopped: the next cell gets a fresh load in a fresh process.
    """

    def __init__(self, gpu_budget: float, energy_country: str | None, accelerator_type: str | None,
                 reuse_processes: bool = True):
        self.budget = gpu_budget
        self.energy_country = energy_country
        self.accelerator_type = accelerator_type
        self.reuse_processes = reuse_processes
        self.sets: dict[int, HostSet] = {}
        self.clock = 0
        self.loads = 0
        self.processes = 0  # host processes started (a reused one serves several loads)

    def _used(self) -> float:
        return sum(s.gpus for s in self.sets.values())

    def _stop(self, host_set: HostSet) -> None:
        import ray

        for host in host_set.hosts:
            ray.kill(host)
        del self.sets[host_set.set_id]

    def _start(self, spec: LoadSpec) -> HostSet:
        import ray

        from actors.model_host import ModelHost

        host_class = ray.remote(ModelHost).options(
            num_gpus=spec.gpus_per_actor,
            # GPU actors must not hold a CPU: on small machines that silently idles logical GPUs
            num_cpus=0,
            # a host whose process or node died is restarted (the model loaded again) and its batch
            # retried; an exception (a load error too: ModelHost defers it to begin_cell) is not retried
            max_restarts=HOST_RETRIES,
            max_task_retries=HOST_RETRIES,
            # Ray's own accelerator label: requires the node resource "accelerator_type:<name>"
            accelerator_type=self.accelerator_type,
        )
        hosts = [host_class.remote(spec, self.energy_country, defer_load_error=True, own_process=True)
                 for _ in range(spec.replicas)]
        self.loads += 1
        self.processes += spec.replicas
        host_set = HostSet(self.loads, spec, spec.gpus_per_actor * spec.replicas, hosts)
        self.sets[host_set.set_id] = host_set
        return host_set

    def acquire(self, spec: LoadSpec) -> tuple[int, list[Any]]:
        need = spec.gpus_per_actor * spec.replicas
        same = [s for s in self.sets.values() if s.key == spec]
        host_set = next((s for s in same if s.users == 0), None)
        if host_set is None and self._used() + need > self.budget + 1e-9 and same:
            # sharing a busy load beats stopping another model to load this one a second time
            host_set = min(same, key=lambda s: s.users)
        if host_set is None and self._used() + need > self.budget + 1e-9:
            host_set = self._reuse(spec)
        if host_set is None:
            while self._used() + need > self.budget + 1e-9:
                idle = [s for s in self.sets.values() if s.users == 0]
                if not idle:
                    break  # Ray queues the new hosts until a busy set is released
                self._stop(min(idle, key=lambda s: s.last_used))
            host_set = self._start(spec)
        self.clock += 1
        host_set.users += 1
        host_set.last_used = self.clock
        return host_set.set_id, host_set.hosts

    def _reuse(self, spec: LoadSpec) -> HostSet | None:
        """The least recently used idle set that `may_take` the load, now keyed to it; None if none."""
        takers = [s for s in self.sets.values() if may_take(s, spec)] if self.reuse_processes else []
        if not takers:
            return None
        host_set = min(takers, key=lambda s: s.last_used)
        host_set.key = spec
        host_set.unloads_in_process = False  # known again once a cell begins on the new load
        self.loads += 1
        return host_set

    def release(self, set_id: int, healthy: bool, starts: list[CellStart] | None = None) -> None:
        """A trial gives its set back; `starts`: what its hosts said when its cell began (whether their
        processes can take another load), none when the cell did not get that far."""
        host_set = self.sets.get(set_id)
        if host_set is None:
            return
        host_set.users -= 1
        if starts:
            host_set.unloads_in_process = all(s.unloads_in_process for s in starts)
            host_set.vllm_here = any(s.vllm_here for s in starts)
        if not healthy:
            self._stop(host_set)

    def stats(self) -> dict[str, int]:
        """Model loads so far, host processes started for them, and host sets alive now."""
        return {"loads": self.loads, "processes": self.processes, "alive": len(self.sets)}

    def shutdown(self) -> None:
        for host_set in list(self.sets.values()):
            self._stop(host_set)
