"""StreamingTwoStreamDataset: an iterable dataset that reads a store's shards in sequence.

    from flowprep.loader import StreamingTwoStreamDataset
    ds = StreamingTwoStreamDataset("out/", modality="flow", seed=0, shuffle_buffer=16)
    ds.set_epoch(epoch)
    for batch in torch.utils.data.DataLoader(ds, batch_size=32, num_workers=8): ...

Units. The store is read in units (``Store.stream_units``): a wds store's
shards, read front to back in one pass each (what object storage and cluster
filesystems serve best), an HDF5 store's shards, or runs of 64 videos of a
JPEG store. Every published video is in exactly one unit.

Splitting (each video exactly once an epoch). The units are put in one order
for the epoch (shuffled with ``(seed, epoch)`` in mode "train", as listed
otherwise: the same on every rank, so ``seed`` must be given when there are
several ranks), then dealt round-robin to the ``world_size * num_workers``
readers: unit j goes to reader ``r = j mod (world_size * num_workers)``, which
is worker ``r mod num_workers`` of rank ``r // num_workers``. Every unit is read by exactly one reader, so every
video is yielded exactly once per epoch across all ranks and workers. When the
units do not divide evenly, some readers get one unit more than others (and
units differ in size), so ranks yield different numbers of samples: with
DistributedDataParallel wrap the loop in ``torch.distributed.algorithms.Join``
(or stop every rank at the smallest count, ``samples_per_rank`` tells them), and
write many more shards than ``world_size * num_workers`` (a small ``--shard-size``)
so the difference stays small. Readers that get no unit yield nothing.

Samples. A video's sample is ``TwoStreamDataset(...).sample(i, epoch, video)`` for
the video's index ``i`` in ``video_ids`` (the store's, or the ``videos=`` list):
exactly ``TwoStreamDataset(...)[i]`` in that epoch with the same seed, because
every random draw of a sample depends only on (seed, epoch, index). Switching
between the two loaders never changes the data, only the order.

Reading. By default (``sequential=True``) a wds shard is read front to back in one
pass, every member's bytes once, each checked against the shard's member table: a
few large sequential reads, what object storage and network filesystems serve best,
at the cost of reading every byte of a video for the ~20 members a 10-flow stack
uses. ``sequential=False`` reads, in the same shard order, only the members each
sample uses, by byte range (``os.pread``; from object storage, 1 MiB range
requests through the store's block cache), crc32 checked: ~3x the samples a second
from a local disk and ~1/3 of the bytes from object storage for flow stacks, with
more, smaller requests; the foreign-member check of the whole pass is then
``flowprep verify``'s. HDF5 and JPEG stores always read a sample's members only.
Both give the same samples.

Shuffling. Finished samples pass through a buffer of ``shuffle_buffer``
samples; once full, each new sample pushes out a uniformly chosen one (drawn
from ``(seed, epoch, rank, worker)``); the rest leave in random order at the end.
``shuffle_buffer`` samples are held per worker (a 10-flow 224x224 float32 stack
is 4 MB). ``shuffle_buffer=0`` (the default outside mode "train") keeps unit order.

Ranks and workers: ``rank`` / ``world_size`` as given, else from
torch.distributed when it is initialized, else from the RANK and WORLD_SIZE
environment variables, else 0 and 1; the DataLoader worker from
``torch.utils.data.get_worker_info()``. flowprep does not import torch when this
module is imported; when torch is installed, an instance is also a
``torch.utils.data.IterableDataset`` (so DataLoader treats it as iterable).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from .dataset import TwoStreamDataset

DEFAULT_SHUFFLE_BUFFER = 16
_TORCH_CLASSES: Dict[type, type] = {}


def _torch_variant(cls: type) -> type:
    """``cls`` and torch's IterableDataset as one class, when torch is installed."""
    if cls in _TORCH_CLASSES:
        return _TORCH_CLASSES[cls]
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return cls
    from torch.utils.data import IterableDataset
    variant = type(cls.__name__, (cls, IterableDataset), {"__module__": cls.__module__,
                                                          "__qualname__": cls.__qualname__})
    _TORCH_CLASSES[cls] = variant
    return variant


def _restore(cls: type, state: Dict[str, Any]) -> "StreamingTwoStreamDataset":
    obj = object.__new__(_torch_variant(cls))
    obj.__dict__.update(state)
    return obj


def _distributed() -> Tuple[Optional[int], Optional[int]]:
    """(rank, world size) from torch.distributed when initialized, else the environment."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None:
        try:
            if dist.is_available() and dist.is_initialized():
                return int(dist.get_rank()), int(dist.get_world_size())
        except (RuntimeError, AttributeError):
            pass
    try:
        r, w = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if r is not None and w is not None:
            return int(r), int(w)
    except ValueError:
        pass
    return None, None


def _worker() -> Tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker running this, or (0, 1)."""
    data = sys.modules.get("torch.utils.data")
    if data is not None:
        info = data.get_worker_info()
        if info is not None:
            return int(info.id), int(info.num_workers)
    return 0, 1


class StreamingTwoStreamDataset:
    """Iterable two-stream samples from a store, its shards read in sequence (module docstring).

    Args:
        store: a Store, or the path of one.
        rank, world_size: this process's rank and the number of ranks (default: from
            torch.distributed, else RANK / WORLD_SIZE, else 0 and 1).
        shuffle_buffer: samples held for shuffling per worker (default 16 in mode
            "train", 0 otherwise: unit order).
        sequential: True (default): a wds shard is read front to back, every byte once
            (one large sequential read a shard); False: only the members each sample
            uses are read, by byte range, in shard order (see "Reading" above).
        **options: every option of TwoStreamDataset (modality, length, num_segments,
            mode, crop_size, seed, videos, labels, layout, flow_scale, ...), meaning
            the same.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "StreamingTwoStreamDataset":
        return object.__new__(_torch_variant(cls))

    def __init__(self, store: Any, *, rank: Optional[int] = None,
                 world_size: Optional[int] = None, shuffle_buffer: Optional[int] = None,
                 sequential: bool = True, **options: Any) -> None:
        self._seed_given = options.get("seed") is not None
        self.dataset = TwoStreamDataset(store, **options)
        if (rank is None) != (world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        if world_size is not None:
            if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
                raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, "
                                  f"world_size={world_size}")
        self.rank = None if rank is None else int(rank)
        self.world_size = None if world_size is None else int(world_size)
        if shuffle_buffer is None:
            shuffle_buffer = DEFAULT_SHUFFLE_BUFFER if self.dataset.mode == "train" else 0
        if int(shuffle_buffer) < 0:
            raise ConfigError(f"shuffle_buffer must be 0 or more samples, got {shuffle_buffer}")
        self.shuffle_buffer = int(shuffle_buffer)
        if not isinstance(sequential, bool):
            raise ConfigError(f"sequential must be True or False, got {sequential!r}")
        self.sequential = sequential
        self.epoch = 0

    def __reduce__(self):
        return (_restore, (StreamingTwoStreamDataset, self.__dict__.copy()))

    # --- the protocol ------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: its unit order, its samples' draws and its shuffle."""
        self.epoch = int(epoch)
        self.dataset.set_epoch(epoch)

    @property
    def video_ids(self) -> List[str]:
        """Every video this dataset yields (over all ranks and workers), index order."""
        return self.dataset.video_ids

    @property
    def seed(self) -> int:
        return self.dataset.seed

    def ranks(self) -> Tuple[int, int]:
        """(rank, world size) this process reads as."""
        if self.world_size is not None:
            return int(self.rank), self.world_size  # type: ignore[arg-type]
        r, w = _distributed()
        if w is None:
            return 0, 1
        if w < 1 or not 0 <= int(r) < w:  # type: ignore[operator]
            raise ConfigError(f"RANK={r} and WORLD_SIZE={w} are not a rank of the world")
        return int(r), int(w)  # type: ignore[arg-type]

    def units(self, epoch: Optional[int] = None) -> List[Tuple[str, List[str]]]:
        """The epoch's units in dealing order: [(unit, its video ids of this dataset)]."""
        epoch = self.epoch if epoch is None else int(epoch)
        store = self.dataset._open()
        keep = set(self.dataset.video_ids)
        units = [(u, [v for v in ids if v in keep]) for u, ids in store.stream_units()]
        units = [(u, ids) for u, ids in units if ids]
        if self.dataset.mode == "train":
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0x5EED]))
            units = [units[j] for j in rng.permutation(len(units))]
        return units

    def assigned(self, rank: int, world_size: int, worker: int = 0, num_workers: int = 1,
                 epoch: Optional[int] = None) -> List[Tuple[str, List[str]]]:
        """The units reader (rank, worker) reads in ``epoch``: unit j of :meth:`units` goes
        to reader j mod (world_size * num_workers) = rank * num_workers + worker."""
        slots = int(world_size) * int(num_workers)
        me = int(rank) * int(num_workers) + int(worker)
        return [u for j, u in enumerate(self.units(epoch)) if j % slots == me]

    def samples_per_rank(self, num_workers: int = 1,
                         epoch: Optional[int] = None) -> List[int]:
        """How many samples each rank yields in ``epoch`` with ``num_workers`` workers."""
        _, world = self.ranks()
        return [sum(len(ids) for w in range(num_workers)
                    for _, ids in self.assigned(r, world, w, num_workers, epoch))
                for r in range(world)]

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        rank, world = self.ranks()
        worker, num_workers = _worker()
        if world > 1 and not self._seed_given:
            raise ConfigError("with several ranks every rank must order the shards alike: "
                              "give StreamingTwoStreamDataset(..., seed=N), the same N on "
                              "every rank")
        epoch = self.epoch
        ds = self.dataset
        index = {vid: i for i, vid in enumerate(ds.video_ids)}
        store = ds._open()
        rng = np.random.default_rng(np.random.SeedSequence(
            [self.seed, epoch, rank, worker, 0xB0FF]))
        buf: List[Dict[str, Any]] = []
        for unit, ids in self.assigned(rank, world, worker, num_workers, epoch):
            for video in store.iter_unit(unit, ids, self.sequential):
                sample = ds.sample(index[video.video_id], epoch, video)
                if self.shuffle_buffer <= 1:
                    yield sample
                    continue
                if len(buf) < self.shuffle_buffer:
                    buf.append(sample)
                    continue
                k = int(rng.integers(len(buf)))
                out, buf[k] = buf[k], sample
                yield out
        while buf:
            k = int(rng.integers(len(buf)))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()

    def __repr__(self) -> str:
        return (f"<StreamingTwoStreamDataset {self.dataset.root!r} videos={len(self.video_ids)} "
                f"modality={self.dataset.modality} shuffle_buffer={self.shuffle_buffer}>")
