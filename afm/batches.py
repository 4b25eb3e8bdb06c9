"""Where training batches come from: the rows resident on the device, or streamed from
(memory-mapped) arrays in shuffled blocks. Both yield (ids (B, F), values (B, F), targets (B,))
tensors on the device and cover a given range of rows (a process's shard under DDP) once per
epoch, in `ceil(rows / batch_size)` batches.

- `ResidentBatches`: the rows are moved to the device once, and each epoch is a seeded
  permutation of them cut into batches: a batch is one index operation. Memory: all rows.
- `StreamedBatches`: for data larger than memory (or than the device). The rows are cut into
  blocks of contiguous rows; each epoch visits the blocks in a seeded random order, a window of
  `BLOCKS_PER_WINDOW` blocks at a time, shuffles the rows within the window and cuts them into
  batches (the rows left over join the next window). Reading is sequential within a block, and
  the next window is read on a background thread while the model trains on this one. Memory: at
  most three windows of `STREAM_WINDOW_BYTES` (the one being cut into batches, the next one read
  ahead, and the one being read), whatever the number of rows. The shuffle is coarser than a
  full permutation: rows of one block always share a window.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from afm.data import Split
from afm.limits import STREAM_WINDOW_BYTES
from afm.metrics import binary_targets

BLOCKS_PER_WINDOW = 16
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def is_memory_mapped(split: Split) -> bool:
    return isinstance(split.feature_ids, np.memmap)


def bytes_per_row(num_fields: int) -> int:
    return num_fields * (8 + 4) + 4  # int64 ids, float32 values, a float32 label


def window_rows(num_fields: int, window_bytes: int = STREAM_WINDOW_BYTES) -> int:
    return max(BLOCKS_PER_WINDOW, window_bytes // bytes_per_row(num_fields))


def targets_of(labels: np.ndarray, task: str) -> np.ndarray:
    """What the loss compares predictions with: {0, 1} for the binary task, else the labels."""
    return np.ascontiguousarray(binary_targets(labels) if task == "binary" else labels, dtype=np.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor of `array`, copied when it is read-only (memory-mapped): torch wants to own writes."""
    return torch.from_numpy(array if array.flags.writeable else np.array(array))


class DeviceSplit:
    """A split's tensors on the training device, so a batch is one index operation."""

    def __init__(self, split: Split, device: torch.device, task: str):
        self.feature_ids = _tensor(split.feature_ids).to(device)  # (N, F)
        self.feature_values = _tensor(split.feature_values).to(device)  # (N, F)
        self.targets = torch.from_numpy(targets_of(split.labels, task)).to(device)  # (N,)
        self.labels = split.labels  # original labels, for metrics

    def __len__(self) -> int:
        return int(self.targets.shape[0])


class ResidentBatches:
    """Rows `rows` of `split` on the device; each epoch a permutation from one seeded generator."""

    def __init__(self, split: Split, rows: range, device: torch.device, task: str, batch_size: int, seed: int):
        whole = rows.start == 0 and rows.stop == len(split)
        part = split if whole else split.take(np.arange(rows.start, rows.stop))
        self.data = DeviceSplit(part, device, task)
        self.device, self.batch_size = device, batch_size
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def num_batches(self) -> int:
        return math.ceil(len(self) / self.batch_size)

    def epoch(self) -> Iterator[Batch]:
        data = self.data
        order = torch.randperm(len(data), generator=self.generator).to(self.device)  # (N,)
        for start in range(0, len(data), self.batch_size):
            rows = order[start:start + self.batch_size]  # (B,)
            yield data.feature_ids[rows], data.feature_values[rows], data.targets[rows]


class StreamedBatches:
    """Rows `rows` of `split` (in memory or memory-mapped) read a window of blocks at a time."""

    def __init__(self, split: Split, rows: range, device: torch.device, task: str, batch_size: int, seed: int,
                 window_bytes: int = STREAM_WINDOW_BYTES):
        self.split, self.rows, self.device, self.task = split, rows, device, task
        self.batch_size, self.seed = batch_size, seed
        self.block_rows = max(1, window_rows(split.num_fields, window_bytes) // BLOCKS_PER_WINDOW)
        self.blocks = [(start, min(start + self.block_rows, rows.stop))
                       for start in range(rows.start, rows.stop, self.block_rows)]
        self.epochs_started = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_batches(self) -> int:
        return math.ceil(len(self) / self.batch_size)

    def read_window(self, blocks: list[tuple[int, int]], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The rows of `blocks` (read in file order), shuffled: ids (W, F), values (W, F), targets (W,)."""
        blocks = sorted(blocks)
        split = self.split
        ids = np.concatenate([split.feature_ids[a:b] for a, b in blocks])  # (W, F)
        values = np.concatenate([split.feature_values[a:b] for a, b in blocks])  # (W, F)
        labels = np.concatenate([split.labels[a:b] for a, b in blocks])  # (W,)
        order = rng.permutation(len(labels))  # (W,)
        return ids[order], values[order], targets_of(labels[order], self.task)

    def windows(self, epoch: int) -> Iterator[tuple[np.ndarray, ...]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.blocks))
        for number, start in enumerate(range(0, len(order), BLOCKS_PER_WINDOW)):
            chosen = [self.blocks[b] for b in order[start:start + BLOCKS_PER_WINDOW]]
            yield self.read_window(chosen, np.random.default_rng([self.seed, epoch, number + 1]))

    def epoch(self) -> Iterator[Batch]:
        epoch, self.epochs_started = self.epochs_started, self.epochs_started + 1
        carry = None  # rows of the last window that did not fill a batch
        for window in read_ahead(self.windows(epoch)):
            if carry is not None:
                window = tuple(np.concatenate([c, w]) for c, w in zip(carry, window))
            full = len(window[2]) - len(window[2]) % self.batch_size
            for start in range(0, full, self.batch_size):
                yield self.to_device(tuple(array[start:start + self.batch_size] for array in window))
            carry = tuple(array[full:] for array in window) if full < len(window[2]) else None
        if carry is not None:
            yield self.to_device(carry)

    def to_device(self, arrays: tuple[np.ndarray, ...]) -> Batch:
        non_blocking = self.device.type == "cuda"
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self.device, non_blocking=non_blocking)
                     for a in arrays)


def read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """`items`, produced `depth` ahead on a background thread (numpy releases the GIL while it
    copies, so reading the next window overlaps training on this one). Closing the iterator
    early (a stop, an error) stops the thread."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    finished = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(finished)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failure(exc))

    thread = threading.Thread(target=produce, name="afm-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is finished:
                return
            if isinstance(item, _Failure):
                raise item.exception
            yield item
    finally:
        stop.set()
        thread.join()


class _Failure:
    def __init__(self, exception: BaseException):
        self.exception = exception
