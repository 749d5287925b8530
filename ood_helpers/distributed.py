"""Several GPUs (or CPU processes) for one training run: torchrun and DistributedDataParallel.

For example::

    torchrun --standalone --nproc-per-node=4 -m ood_helpers reproduce --setting cifar10-mnist \\
        --preset paper --seed 0 --out runs/ddp/cifar10-mnist
    make reproduce-ddp NPROC=4 PRESET=paper

torchrun starts one process per GPU and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; the
command line calls :func:`init_from_env` (nccl with CUDA, else gloo) and everything else follows
from the process group. How :func:`ood_helpers.runtime.train_stage` splits a run:

- **Same start.** Every rank builds the networks under the same seed (identical weights), and
  DDP broadcasts rank 0's weights when it wraps a network.
- **Same order, sliced.** Every rank draws the same epoch order (same seed, same generator); the
  global batch is the preset's ``batch_size`` and rank ``r`` trains on slice ``r`` of it
  (:class:`ShareOfEachBatch`, a loop hook). Each rank draws its own noise and synthetic outliers
  (a step generator per rank), so a distributed run sees the images of a single-process run with
  other, equally distributed, augmentations. A batch with fewer than 2 images per rank is dropped
  (BatchNorm needs 2 in training mode).
- **Gradients** are averaged by DDP; each epoch's mean loss is averaged over ranks (one
  all-reduce per epoch), so every rank stops alike on divergence.
- **BatchNorm** normalises with the statistics of the global batch, as in one process:
  PyTorch's ``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm2d` (differentiable all-reduces of
  per-channel sums) elsewhere, e.g. gloo on the CPU, where ``SyncBatchNorm`` does
  not run. So a distributed run computes what one process computes, up to float rounding. After
  each stage rank 0's weights and BatchNorm statistics are broadcast, so every rank ends with
  the same networks.
- **Files.** Rank 0 alone writes (training state, results, the detector) and shows progress
  bars; the other ranks wait for it at a barrier. Scoring and calibration run on every rank
  (identical networks, identical numbers).

Several seeds or ablations on several GPUs need no DDP, only one process per GPU::

    for gpu in 0 1 2 3; do
        CUDA_VISIBLE_DEVICES=$gpu python -m ood_helpers reproduce --setting mnist-cifar10 \\
            --preset paper --seed $gpu --out runs/paper/mnist-cifar10/seed$gpu &
    done; wait
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
from torch import nn

from .loop import Hooks

DEFAULT_TIMEOUT_S = 1800


def initialized() -> bool:
    """Whether a ``torch.distributed`` process group exists in this process."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """Number of processes in the process group (1 without one)."""
    return torch.distributed.get_world_size() if initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if initialized() else 0


def is_main() -> bool:
    """True on rank 0 and in a single process: the process that writes files and shows progress."""
    return rank() == 0


def active() -> bool:
    """True when training is split over more than one process."""
    return world_size() > 1


def env_world_size() -> int:
    """``$WORLD_SIZE`` as torchrun sets it (1 when unset).

    Raises
    ------
    ValueError
        When ``WORLD_SIZE`` is not a positive integer.
    """
    value = os.environ.get("WORLD_SIZE", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"WORLD_SIZE: expected a positive integer, got {value!r}.")
    return int(value)


def init_from_env(timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); otherwise do nothing.

    The backend is nccl when CUDA is available (and this process then uses GPU ``LOCAL_RANK``),
    else gloo.

    Parameters
    ----------
    timeout_s : float
        How long a collective (and the start-up rendezvous) may wait for the other ranks.

    Returns
    -------
    bool
        True when this call created the process group (call :func:`shutdown` at the end).

    Raises
    ------
    ValueError
        Bad ``WORLD_SIZE``.
    RuntimeError, torch.distributed.DistBackendError
        When the other ranks cannot be reached in time.
    """
    if env_world_size() <= 1 or initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return True


def shutdown() -> None:
    """Leave the process group, if there is one."""
    if initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if active():
        torch.distributed.barrier()


def average(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over ranks (a new tensor; ``tensor`` itself in a single process).

    Parameters
    ----------
    tensor : torch.Tensor
        Any shape, on the backend's device (CUDA for nccl, CPU or CUDA for gloo).

    Returns
    -------
    torch.Tensor, same shape
    """
    if not active():
        return tensor
    total = tensor.detach().clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total / world_size()


def broadcast_module(module: nn.Module, source: int = 0) -> None:
    """Copy rank ``source``'s parameters and buffers (BatchNorm statistics) to every rank, in place."""
    if not active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, source)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with autograd: the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor):
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad):
        total = grad.clone()
        torch.distributed.all_reduce(total)
        return total


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics are those of the global batch over all ranks.

    Works with any backend (gloo on the CPU too): per forward pass, two differentiable
    all-reduces, of the per-channel sums (and the count), then of the squared deviations from the
    global mean; their backward all-reduces the gradients, as ``SyncBatchNorm`` does. In eval
    mode, or without a process group, it is exactly ``BatchNorm2d``. The running statistics are updated like ``BatchNorm2d``'s, with the
    global mean and unbiased variance.

    Input and output: (N, C, H, W), the same N per rank not required.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W) with the global batch's statistics (training) or the running ones."""
        if not (self.training and active()):
            return super().forward(x)
        all_reduce = _SumOverRanks.apply
        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum((0, 2, 3)), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        # two passes, as BatchNorm2d: E[x^2] - E[x]^2 cancels badly for channels of small variance
        var = all_reduce((x - mean[None, :, None, None]).pow(2).sum((0, 2, 3))) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - factor).add_(factor * mean)
                self.running_var.mul_(1 - factor).add_(factor * var * total / (total - 1))
        out = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


def wrap(model: nn.Module, device, sync_batchnorm: bool = True):
    """``model`` wrapped in DistributedDataParallel for training, and a function that undoes it.

    Parameters
    ----------
    model : nn.Module
        On ``device``; its parameters are the ones trained (the wrapper shares them).
    device : torch.device
    sync_batchnorm : bool
        Normalise with the global batch's statistics while training: ``SyncBatchNorm`` on CUDA,
        :class:`GlobalBatchNorm2d` elsewhere (False: each rank its own slice's statistics).

    Returns
    -------
    (nn.Module, callable)
        The module to call in training steps, and ``undo()``: puts plain ``BatchNorm2d`` back
        (same parameters and statistics) and broadcasts rank 0's parameters and buffers.
    """
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device)
    if sync_batchnorm:
        _swap_batchnorm(model, nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm2d)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids)

    def undo():
        if sync_batchnorm:
            _swap_batchnorm(model, nn.BatchNorm2d)
        broadcast_module(model)

    return wrapped, undo


def _swap_batchnorm(module: nn.Module, kind: type) -> nn.Module:
    """Replace, in place, every 2-d batch norm below ``module`` by one of ``kind`` sharing its
    parameters and statistics; return ``module``."""
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm2d, nn.SyncBatchNorm)) and type(child) is not kind:
            swapped = kind(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                swapped.weight, swapped.bias = child.weight, child.bias
            if child.track_running_stats:
                swapped.running_mean, swapped.running_var = child.running_mean, child.running_var
                swapped.num_batches_tracked = child.num_batches_tracked
            swapped.train(child.training)
            module.add_module(name, swapped)
        else:
            _swap_batchnorm(child, kind)
    return module


class ShareOfEachBatch(Hooks):
    """A loop hook: this process trains on its slice of every global mini-batch (``tensor_split``),
    a batch with fewer than 2 images per process is dropped (BatchNorm needs 2), and the epoch's
    mean loss is averaged over processes, so every process stops alike on divergence."""

    def __init__(self, world: int, rank: int):
        self.world, self.rank = world, rank

    def on_batches(self, run, batches):
        return [batch.tensor_split(self.world)[self.rank] for batch in batches if len(batch) >= 2 * self.world]

    def epoch_loss(self, run, mean):
        return average(mean)
