"""Scale-out with torch.distributed under torchrun (or Slurm's srun + torchrun): who this process is, its device,
the process group's life, deterministic sharding of work and gathering of results.

Without torchrun (no WORLD_SIZE in the environment) everything here degrades to one process of world size 1,
so the same code path runs alone and under `torchrun --nproc_per_node N`.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, TypeVar, Union

from sgsim.errors import SgsimError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
# Seconds a collective waits for the other ranks before failing (a rank that died or hangs); torch's default is 30 min.
TIMEOUT_ENV = "SGSIM_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week; inf overflowed timedelta


@dataclass(frozen=True)
class Rank:
    """This process's place in the job, as torchrun (or srun + torchrun) sets it in the environment."""

    rank: int = 0  # global rank, 0..world_size-1
    world_size: int = 1
    local_rank: int = 0  # rank on this node: the GPU index it uses

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes what must be written once (summaries, checkpoints)."""
        return self.rank == 0


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SgsimError(f"the environment variable {name}={value!r} is not a whole number; run under torchrun, which sets it") from None


def current_rank() -> Rank:
    """Rank, world size and local rank from torchrun's RANK, WORLD_SIZE and LOCAL_RANK (world size 1 without them)."""
    world = _environment_int("WORLD_SIZE", 1)
    rank, local = _environment_int("RANK", 0), _environment_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise SgsimError(f"RANK={rank} and WORLD_SIZE={world} do not describe a rank of a job; run under torchrun, which sets both")
    return Rank(rank, world, local)


def timeout_seconds() -> float:
    """How long a collective waits for the slowest rank ($SGSIM_DISTRIBUTED_TIMEOUT, default 30 min)."""
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S):
        raise SgsimError(f"{TIMEOUT_ENV}={value!r} must be a number of seconds > 0 and at most {MAX_TIMEOUT_S:g} (a week)")
    return seconds


def rendezvous_address(rank: Rank) -> str:
    """'MASTER_ADDR:MASTER_PORT', where torchrun's ranks meet, checked to be set before any connection is tried."""
    address, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    if not address or not (port.isdigit() and 0 < int(port) < 65536):
        raise SgsimError(f"WORLD_SIZE={rank.world_size} but MASTER_ADDR={address[:100]!r} and MASTER_PORT={port[:100]!r} do not say "
                         f"where the ranks meet; run under torchrun, which sets them")
    return f"{address}:{port}"


def _first_line(error: BaseException) -> str:
    """The first line of a torch.distributed error (they run to many lines of C++ context)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def rank_device(rank: Rank, requested: Union[str, "torch.device", None]) -> "torch.device":
    """The device of this rank: with CUDA and no index asked for (--device unset or 'cuda'), cuda:LOCAL_RANK, so each
    process of a node has its own GPU; anything else is checked by sgsim.devices.parse_device."""
    import torch

    from sgsim.devices import parse_device

    if rank.distributed and str(requested or "cuda") == "cuda" and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if rank.local_rank >= count:
            raise SgsimError(f"local rank {rank.local_rank} has no GPU of its own: this node has {count}; "
                             f"start at most {count} processes per node (torchrun --nproc_per_node {count})")
        return parse_device(f"cuda:{rank.local_rank}")
    return parse_device(requested)


@contextlib.contextmanager
def process_group(device: Union[str, "torch.device", None] = None) -> Iterator[Rank]:
    """Join the torchrun job for the body (nccl on CUDA, gloo on the CPU; the timeout of timeout_seconds()) and
    leave it afterwards; alone (world size 1) no group is created."""
    import torch
    import torch.distributed as dist

    rank = current_rank()
    if not rank.distributed or (dist.is_available() and dist.is_initialized()):
        yield rank
        return
    if not dist.is_available():
        raise SgsimError("this torch build has no torch.distributed; run without torchrun")
    timeout, address = timeout_seconds(), rendezvous_address(rank)
    cuda = torch.device(device).type == "cuda" if device is not None else False
    if cuda:
        torch.cuda.set_device(torch.device(device))
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout))
    except (dist.DistError, ValueError) as error:
        raise SgsimError(f"rank {rank.rank} of {rank.world_size} could not join the job at {address} within {timeout:g} s "
                         f"({_first_line(error)}); start every rank, or raise {TIMEOUT_ENV}") from None
    try:
        yield rank
    finally:
        dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard(items: Sequence[T], rank: Rank, weights: Optional[Sequence[int]] = None) -> list[T]:
    """This rank's share of `items`: every rank computes the same split from the same list, no item is in two shares.

    Without weights, round robin (items[rank::world]). With a weight per item (e.g. jobs in a group), greedy
    balancing: heaviest first, each to the least-loaded rank (ties: lowest rank), then back in the list's order.
    """
    if weights is None:
        return list(items[rank.rank::rank.world_size])
    if len(weights) != len(items):
        raise ValueError(f"shard: {len(weights)} weights for {len(items)} items")
    loads = [0] * rank.world_size
    mine = []
    for index in sorted(range(len(items)), key=lambda i: (-weights[i], i)):
        owner = min(range(rank.world_size), key=lambda r: (loads[r], r))
        loads[owner] += weights[index]
        if owner == rank.rank:
            mine.append(index)
    return [items[i] for i in sorted(mine)]


def gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank (picklable values; [value] when alone)."""
    if not active():
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size()
    with _peers_answer("exchange results"):
        dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait until every rank gets here (nothing when alone)."""
    if active():
        import torch.distributed as dist

        with _peers_answer("wait for each other"):
            dist.barrier()


@contextlib.contextmanager
def _peers_answer(what: str) -> Iterator[None]:
    """Turn a collective that failed (a rank died, hung past the timeout or left) into one SgsimError line."""
    import torch.distributed as dist

    try:
        yield
    except dist.DistError as error:
        raise SgsimError(f"the ranks could not {what}: another rank failed, hung past {timeout_seconds():g} s or left "
                         f"({_first_line(error)}); see that rank's output") from None
