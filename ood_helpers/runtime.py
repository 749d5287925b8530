"""How a run is executed, apart from what it computes: device, precision, compile, processes, progress.

A preset (:mod:`ood_helpers.presets`) says *what* is trained; :class:`RunOptions` says *how*.
:func:`train_stage` runs one network's training through the one loop (:mod:`ood_helpers.loop`)
with the same step on every machine; the machinery only wraps it:

- the training images live on the device, and so does the generator that draws the epoch
  orders, noise and outliers (seeded by one draw from the run's CPU generator);
- ``precision="bf16"`` runs the networks' forward passes under bfloat16 autocast (their last
  layers stay float32, see :mod:`ood_helpers.networks`); ``compile`` passes the trained network
  through ``torch.compile`` and falls back to eager execution, with a warning, if compiling fails;
- under torchrun the network is wrapped in DistributedDataParallel and each process trains on its
  share of every global batch (:mod:`ood_helpers.distributed`);
- progress bars, the saved training state (resume) and epoch callbacks are loop hooks.
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .loop import Hooks, run_epochs
from .validation import InputError, check_choice

PRECISIONS = ("auto", "bf16", "fp32")
COMPILE_CHOICES = ("auto", "on", "off")


def pick_device(device=None) -> torch.device:
    """``device`` if given, else CUDA, else Apple MPS, else the CPU.

    Raises InputError when ``device`` is not a torch device or names one this machine lacks.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"device: expected a torch device such as 'cpu' or 'cuda', got {device!r}.") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device: {device!r} asks for an NVIDIA GPU, but torch finds none here "
                         f"(torch.cuda.is_available() is False: no GPU, no driver, or a CPU-only torch). "
                         f"Fix: device='cpu', or device=None (the GPU when there is one, else the CPU).")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise InputError(f"device: {device!r} names GPU {chosen.index}, but torch sees "
                         f"{torch.cuda.device_count()}. Fix: device='cuda:0' or device=None.")
    mps = getattr(torch.backends, "mps", None)
    if chosen.type == "mps" and (mps is None or not mps.is_available()):
        raise InputError(f"device: {device!r} asks for Apple's MPS, which this machine or torch lacks. "
                         f"Fix: device='cpu' or device=None.")
    return chosen


def _process_group() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


@dataclass(frozen=True)
class RunOptions:
    """How training runs (see the module doc); a run's record keeps :meth:`as_dict`."""

    device: torch.device
    precision: str = "fp32"
    compile: bool = False
    world_size: int = 1
    rank: int = 0

    def as_dict(self) -> dict:
        """What shapes the numbers (the rank does not): device type, precision, compile, processes."""
        return {"device": self.device.type, "precision": self.precision, "compile": self.compile,
                "world_size": self.world_size, "sync_batchnorm": self.world_size > 1}


def run_options(device=None, precision: str = "auto", compile_step: str = "auto") -> RunOptions:
    """Resolve the switches: "auto" means bfloat16 and compile with CUDA (compile in one process only).

    Raises InputError for an unknown device, precision or compile choice.
    """
    device = pick_device(device)
    check_choice(precision, PRECISIONS, "precision")
    check_choice(compile_step, COMPILE_CHOICES, "compile_step")
    world, rank = _process_group()
    cuda = device.type == "cuda"
    bf16 = precision == "bf16" or (precision == "auto" and cuda)
    compiled = compile_step == "on" or (compile_step == "auto" and cuda and world == 1)
    return RunOptions(device, "bf16" if bf16 else "fp32", compiled, world, rank)


def interactive() -> bool:
    """Whether progress bars have a live display: a terminal, or a notebook (tqdm.auto's widgets)."""
    if "notebook" in getattr(tqdm, "__module__", ""):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress(Hooks):
    """A tqdm bar per epoch with the running loss; in a log or CI (no live display), one line per epoch."""

    def __init__(self, name: str, live_loss: bool = True):
        self.name, self.live_loss, self.lines, self.bar = name, live_loss, not interactive(), None

    def on_batches(self, run, batches):
        if not self.lines:
            self.bar = tqdm(total=len(batches), desc=f"{self.name} epoch {run.epoch + 1}/{run.epochs}", leave=False)
        self.count = len(batches)
        return batches

    def on_step_end(self, run, step, total):
        if self.bar is not None:
            self.bar.update()
            if step == self.count or (self.live_loss and step % 10 == 0):   # each read waits for the device
                self.bar.set_postfix(loss=f"{float(total) / step:.4f}", refresh=False)

    def on_epoch_end(self, run):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.lines:
            print(f"{self.name} epoch {run.epoch}/{run.epochs}: loss {run.losses[-1]:.4f}", file=sys.stderr, flush=True)


class EpochCallback(Hooks):
    """Calls ``callback(epoch, mean_loss)`` after each epoch and appends the epoch's wall seconds to
    ``seconds`` (epochs resumed from a saved state are not timed)."""

    def __init__(self, callback=None, seconds: list | None = None):
        self.callback, self.seconds = callback, seconds

    def on_start(self, run):
        self.last = time.perf_counter()

    def on_epoch_end(self, run):
        now = time.perf_counter()
        if self.seconds is not None:
            self.seconds.append(now - self.last)
        self.last = now
        if self.callback is not None:
            self.callback(run.epoch, run.losses[-1])


class _Forward:
    """A network's forward pass under autocast and/or ``torch.compile``; to eager on a compile failure."""

    def __init__(self, module, options: RunOptions, compile_it: bool, name: str):
        self.module, self.current, self.options, self.name = module, module, options, name
        if compile_it:
            try:
                self.current = torch.compile(module, dynamic=False)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                self._warn(err)

    def _warn(self, err):
        first = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(f"{self.name}: torch.compile is not used ({type(err).__name__}: {first}); training runs "
                      f"eagerly.", RuntimeWarning, stacklevel=3)

    def __call__(self, *args):
        autocast = (torch.autocast(self.options.device.type, dtype=torch.bfloat16)
                    if self.options.precision == "bf16" else contextlib.nullcontext())
        with autocast:
            try:
                return self.current(*args)
            except Exception as err:   # compiling happens at the first call; a failure there falls back
                if self.current is self.module:
                    raise
                self._warn(err)
                self.current = self.module
                return self.module(*args)


def _generators(generator: torch.Generator, options: RunOptions):
    """The epoch-order generator (the same in every process) and the step generator (one per
    process under torchrun, so the processes draw independent noise and outliers)."""
    if options.device.type == "cpu" and options.world_size == 1:
        return generator, generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    order = torch.Generator(device=options.device).manual_seed(seed)
    if options.world_size == 1:
        return order, order
    return order, torch.Generator(device=options.device).manual_seed(seed + 1 + options.rank)


def train_stage(model, make_step, n_items: int, *, schedule: dict, generator: torch.Generator, options: RunOptions,
                name: str, progress: bool = True, state_path=None, identity: dict | None = None,
                hooks=(), frozen=()) -> list[float]:
    """Train ``model`` through :func:`~ood_helpers.loop.run_epochs` as ``options`` say.

    ``make_step(networks, generator)`` returns the loop's ``step(index)``; ``networks`` is
    ``model`` followed by ``frozen``, each wrapped for autocast (and ``model`` for compile and
    DDP). ``schedule`` holds ``epochs``, ``batch_size``, ``lr``, ``betas``, ``milestones``,
    ``gamma``. With ``state_path`` the training state is saved after every epoch and resumed.
    Returns the mean loss per epoch.
    """
    order_generator, step_generator = _generators(generator, options)
    hooks = list(hooks)
    if progress and options.rank == 0:
        hooks.append(Progress(name, live_loss=options.device.type == "cpu"))
    if state_path is not None:
        from .checkpoints import TrainingState

        hooks.insert(0, TrainingState(state_path, {**schedule, "name": name, "n_items": n_items, **(identity or {})}))
    trained, undo, min_batch = model, None, 2
    with contextlib.ExitStack() as stack:
        if options.device.type == "cuda":   # fixed shapes: cuDNN may pick its fastest kernels (restored after)
            stack.callback(setattr, torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
            torch.backends.cudnn.benchmark = True
        if options.world_size > 1:
            from . import distributed

            trained, undo = distributed.wrap(model, options.device)
            hooks.append(distributed.ShareOfEachBatch(options.world_size, options.rank))
            min_batch = 2 * options.world_size
        networks = [_Forward(trained, options, options.compile, name)]
        networks += [_Forward(net, options, False, name) for net in frozen]
        losses = run_epochs(model, make_step(networks, step_generator), n_items, generator=order_generator,
                            name=name, hooks=hooks, min_batch=min_batch, **schedule)
        if undo is not None:
            undo()
    return losses
