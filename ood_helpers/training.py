"""Training: one epoch loop for every network in the package, and the paper's two training stages.

:func:`run_epochs` is the only training loop: the detector's autoencoder and classifier, the deep
baselines and notebook 04's cheating demo all call it. It uses Adam and MultiStepLR (the paper:
lr 1e-4, betas (0.9, 0.99), gamma 0.2 at epochs 40 and 80 of 100), shows a progress bar per epoch,
stops with :class:`TrainingDivergedError` when the loss stops being finite, and with ``state_path``
saves the whole training state after every epoch so that a restarted run resumes where it stopped.
A saved state is reused only by a run with the same identity (every setting that shapes the
result); anything else starts afresh.

Two paths train the detector's networks (:func:`train_autoencoder`, :func:`train_classifier`),
chosen per run by :func:`training_plan` from three preset fields:

- ``fast_path`` ("auto" = on with CUDA, "on", "off"). **Standard path** (the CPU default): the
  reference code; each step is one call of the public step functions :func:`autoencoder_loss`
  (autoencoder) or :func:`classifier_batch` then :func:`classifier_loss` (classifier), which a
  notebook can run by hand; a fixed seed gives the losses it always gave (tests/test_fast_path.py
  checks them against stored values). **Fast path**: the training images stay on the device;
  noise (:meth:`~ood_helpers.noise.NoiseAugment.batched`) and synthetic outliers
  (:func:`~ood_helpers.outliers.make_outliers_batched`) are made there with a device
  ``torch.Generator`` (same families and parameters, batched kernels instead of per-image
  loops), epoch orders are drawn there too, and nothing waits for the device inside an epoch
  (the loss is summed on the device and read once per epoch; the progress bar shows it then);
  networks and inputs are channels_last; the paper's batch size is kept. The fast path draws
  different random numbers than the standard path, so its losses are close, not equal.
- ``precision`` ("auto" = bfloat16 on the CUDA fast path, "bf16", "fp32"): bfloat16 autocast
  for the networks' forward passes on the fast path (ignored on the standard path). The last
  layer of every network, the losses and their reductions stay float32 (see
  :mod:`ood_helpers.models`); the latent density and all scoring run in float32.
- ``compile_step`` ("auto" = on the CUDA fast path in a single process, "on", "off"): the forward
  pass and loss of a step through ``torch.compile(mode="reduce-overhead")`` (CUDA graphs). If
  compiling fails, training warns and goes on without it.

Under torchrun both paths train with DistributedDataParallel (:mod:`ood_helpers.distributed`).
The resolved plan is part of a detector's run identity and ``history_["training"]``.
"""
from __future__ import annotations

import contextlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed
from .api import fingerprint
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .noise import NoiseAugment
from .models import rotate_batch
from .outliers import make_outliers, make_outliers_batched
from .presets import Preset

STATE_FORMAT = "ood_helpers.training_state"


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; nothing was fitted."""


def pick_device(device=None) -> torch.device:
    """The device to train on: ``device`` if given, else CUDA, else Apple MPS, else the CPU.

    Raises
    ------
    ood_helpers.validation.InputError
        When ``device`` is not a valid torch device string or object, or names a GPU this machine
        does not have (``'cuda'`` without a driver, say).
    """
    from .validation import InputError

    if device is not None:
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
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def difference_image(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The paper's difference image :math:`|I - D(E(I))|` (Section 3.2, Figure 2).

    Parameters
    ----------
    images, reconstruction : torch.Tensor (N, C, 32, 32), values in [0, 1]

    Returns
    -------
    torch.Tensor (N, C, 32, 32), values in [0, 1]
    """
    return (images - reconstruction).abs()


def interactive() -> bool:
    """Whether progress bars have a live display: a terminal, or a notebook (tqdm.auto's widgets)."""
    if "notebook" in getattr(tqdm, "__module__", ""):
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def state_file(work_dir, stage: str, identity: dict) -> Path:
    """Where :func:`run_epochs` keeps one stage's state: a name unique to the run's identity, so
    runs that differ in anything (seed, preset field, data) never share a state file."""
    return Path(work_dir) / f"{stage}_state_{fingerprint(identity)}.pt"


def run_epochs(model: torch.nn.Module, step, n_items: int, *, epochs: int, batch_size: int,
               generator: torch.Generator, lr: float, betas=(0.9, 0.999), milestones=(), gamma: float = 0.1,
               name: str = "training", progress: bool = True, state_path=None, identity: dict | None = None,
               on_epoch_end=None, min_batch: int = 2, live_loss: bool = True) -> list[float]:
    """Train ``model`` with Adam (+ MultiStepLR) over shuffled mini-batches; the package's one loop.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters are optimised; it is in train mode during epochs and eval mode after.
    step : callable
        ``step(index) -> loss``: ``index`` is an int64 tensor of item positions on the
        generator's device (one mini-batch of at least ``min_batch`` items; a shorter last batch
        is dropped), ``loss`` a scalar tensor. If a step (or its backward pass) raises and
        ``step.fallback(error)`` exists and returns True, that step is tried once more (how a
        failed ``torch.compile`` falls back to eager execution).
    n_items : int
        Number of training items the indices refer to.
    epochs, batch_size : int
    generator : torch.Generator
        Draws the epoch orders (on its own device) and, through ``step``, anything else random,
        so a fixed seed reproduces the run.
    lr, betas : Adam's learning rate and betas.
    milestones : sequence of int
        Epochs after which the learning rate is multiplied by ``gamma`` (MultiStepLR).
    name : str
        Shown on the progress bar and in errors.
    progress : bool
        Show a tqdm progress bar per epoch; when stderr is neither a terminal nor a notebook (a log,
        CI), one line per epoch with its loss instead.
    state_path : path or None
        Save the training state there (atomically) after each epoch and resume from it.
    identity : dict or None
        Everything that defines the run; a saved state with another identity is ignored (and
        overwritten), never resumed.
    on_epoch_end : callable or None
        ``on_epoch_end(epoch, mean_loss)`` after each epoch (epochs count from 1).
    min_batch : int >= 2
        Batches with fewer items are skipped (2: BatchNorm needs two; DDP passes 2 per rank).
    live_loss : bool
        Show the running loss on the progress bar every 10 steps (each read waits for the
        device); False shows it at the end of the epoch only.

    Returns
    -------
    list of float
        Mean training loss of every epoch (resumed epochs included); under torchrun, averaged
        over ranks. Only rank 0 saves ``state_path``.

    Raises
    ------
    TrainingDivergedError
        When an epoch's loss is NaN or infinite.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=gamma)
    state_path = Path(state_path) if state_path is not None else None
    identity = {"name": name, "epochs": epochs, "n_items": n_items, "batch_size": batch_size, "lr": lr,
                "betas": list(betas), "milestones": list(milestones), "gamma": gamma, **(identity or {})}
    if not any(min(batch_size, n_items - i) >= min_batch for i in range(0, n_items, batch_size)):
        from .validation import InputError
        raise InputError(f"{name}: nothing would be trained: {n_items} training item(s) in batches of batch_size="
                         f"{batch_size} give no mini-batch of at least {min_batch} (smaller ones are dropped), so "
                         f"every epoch would be empty. Fix: batch_size >= {min_batch} and at least {min_batch} "
                         f"training images for this network (a larger train_limit, or more images).")
    start, losses = _resume(state_path, identity, model, optimizer, scheduler, generator)
    device = next(model.parameters()).device
    # a log or CI (stderr not a terminal, not a notebook) gets one line per epoch instead of bars
    lines = progress and not interactive()
    for epoch in range(start, epochs):
        model.train()
        order = torch.randperm(n_items, generator=generator, device=generator.device)
        batches = [order[i:i + batch_size] for i in range(0, n_items, batch_size)
                   if min(batch_size, n_items - i) >= min_batch]
        total = torch.zeros((), device=device)  # summed on the device: no host synchronisation per step
        bar = tqdm(batches, desc=f"{name} epoch {epoch + 1}/{epochs}", leave=False, disable=not progress or lines)
        for count, index in enumerate(bar, start=1):
            optimizer.zero_grad(set_to_none=True)
            try:
                loss = step(index)
                loss.backward()
            except Exception as err:
                fallback = getattr(step, "fallback", None)
                if fallback is None or not fallback(err):
                    raise
                optimizer.zero_grad(set_to_none=True)
                loss = step(index)
                loss.backward()
            optimizer.step()
            total += loss.detach()
            if progress and (count == len(batches) or (live_loss and count % 10 == 0)):
                bar.set_postfix(loss=f"{float(total) / count:.4f}", refresh=False)
        scheduler.step()
        mean = float(distributed.average(total)) / max(1, len(batches))
        if not torch.isfinite(torch.tensor(mean)):
            raise TrainingDivergedError(
                f"{name} training diverged: the mean loss of epoch {epoch + 1} is {mean}; nothing was fitted. "
                f"Fix: lower the learning rate (lr={lr:g}), or check the training images for extreme values.")
        losses.append(mean)
        if lines:
            print(f"{name} epoch {epoch + 1}/{epochs}: loss {mean:.4f}", file=sys.stderr, flush=True)
        if state_path is not None and distributed.is_main():
            save_checkpoint({"format": STATE_FORMAT, "version": 2, "config": identity, "epoch": epoch + 1,
                             "losses": losses, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                             "torch_rng": torch.get_rng_state()}, state_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, losses[-1])
    model.eval()
    return losses


def _resume(state_path, identity, model, optimizer, scheduler, generator) -> tuple[int, list]:
    """(first epoch to run, losses so far) from a saved state of the same run, else (0, [])."""
    if state_path is None or not state_path.exists():
        return 0, []
    try:
        state = load_checkpoint(state_path, STATE_FORMAT)
        if json.loads(json.dumps(state.get("config"), default=str)) != json.loads(json.dumps(identity, default=str)):
            return 0, []
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
    except (CheckpointError, KeyError, RuntimeError, ValueError, TypeError):
        # an unusable state is a cache miss: the run starts from epoch 0 and overwrites it
        return 0, []
    return int(state["epoch"]), [float(x) for x in state["losses"]]


def preset_schedule(preset: Preset, epochs: int) -> dict:
    """The :func:`run_epochs` keyword arguments a preset sets (optimiser, schedule, batch size)."""
    return dict(epochs=epochs, batch_size=preset.batch_size, lr=preset.lr, betas=tuple(preset.betas),
                milestones=preset.milestone_epochs(epochs), gamma=preset.gamma)


@dataclass(frozen=True)
class TrainingPlan:
    """How the detector's networks train: what :func:`training_plan` resolved for one device.

    Attributes
    ----------
    fast : bool
        The fast path (see the module doc) instead of the standard one.
    precision : {"fp32", "bf16"}
        Autocast dtype of the networks' forward passes in training (fast path only).
    compile : bool
        Forward pass and loss through ``torch.compile(mode="reduce-overhead")``.
    world_size, rank : int
        Processes training together (torchrun) and this one's rank.
    sync_batchnorm : bool
        BatchNorm with the global batch's statistics under DDP (see :mod:`ood_helpers.distributed`).
    """

    fast: bool = False
    precision: str = "fp32"
    compile: bool = False
    world_size: int = 1
    rank: int = 0
    sync_batchnorm: bool = False

    def as_dict(self) -> dict:
        """What shapes the result (the rank does not): ``path``, ``precision``, ``compile``,
        ``world_size``, ``sync_batchnorm``."""
        return {"path": "fast" if self.fast else "standard", "precision": self.precision, "compile": self.compile,
                "world_size": self.world_size, "sync_batchnorm": self.sync_batchnorm}


def training_plan(preset: Preset, device) -> TrainingPlan:
    """Resolve a preset's ``fast_path``, ``precision`` and ``compile_step`` for ``device`` and the
    current process group (see the module doc for what "auto" means).

    Parameters
    ----------
    preset : Preset
    device : str or torch.device

    Returns
    -------
    TrainingPlan
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    world = distributed.world_size()
    fast = preset.fast_path == "on" or (preset.fast_path == "auto" and cuda)
    bf16 = fast and (preset.precision == "bf16" or (preset.precision == "auto" and cuda))
    compiled = fast and (preset.compile_step == "on" or (preset.compile_step == "auto" and cuda and world == 1))
    return TrainingPlan(fast=fast, precision="bf16" if bf16 else "fp32", compile=compiled, world_size=world,
                        rank=distributed.rank(), sync_batchnorm=world > 1)


class _LossFunction:
    """A step's forward pass and loss, eager or through ``torch.compile``; falls back to eager
    execution (with a warning) when compiling fails, at wrapping time or at the first call."""

    def __init__(self, function, compile_it: bool, name: str):
        self.eager, self.current, self.name = function, function, name
        if compile_it:
            compiler = getattr(torch, "compile", None)
            if compiler is None:
                self._warn("this torch has no torch.compile")
            else:
                try:
                    self.current = compiler(function, mode="reduce-overhead", dynamic=False)
                except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                    self._warn(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        self.compiled = self.current is not function

    def _warn(self, reason: str):
        warnings.warn(f"{self.name}: torch.compile is not used ({reason}); training runs eagerly.", RuntimeWarning,
                      stacklevel=3)

    def __call__(self, *args):
        if self.compiled:
            mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
            if mark is not None:
                mark()   # a new training step: CUDA graph outputs of the last one may be overwritten
        return self.current(*args)

    def fallback(self, err: BaseException) -> bool:
        """Switch to eager execution after a failure of the compiled function; False if already eager."""
        if not self.compiled:
            return False
        self._warn(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        self.current, self.compiled = self.eager, False
        return True


class _StageContext:
    """What one training stage needs beyond the standard path: the device generator and resident
    images of the fast path, channels_last, autocast, DDP and the rank's slice of each batch."""

    def __init__(self, model, plan: TrainingPlan, device, generator: torch.Generator, frozen=()):
        self.model, self.plan, self.device, self.frozen = model, plan, torch.device(device), tuple(frozen)
        self.generator = generator
        self.module, self._undo = model, None
        self._labels: dict = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        if self.plan.fast:
            # one draw from the CPU generator seeds the device generator: a seed still fixes the run
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self.generator = torch.Generator(device=self.device).manual_seed(seed)
            for net in (self.model, *self.frozen):
                net.to(memory_format=torch.channels_last)
            if self.device.type == "cuda":   # fixed shapes: let cuDNN pick its fastest kernels (restored after)
                self._stack.callback(setattr, torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
                torch.backends.cudnn.benchmark = True
        if self.plan.world_size > 1:
            self.module, self._undo = distributed.wrap(self.model, self.device, self.plan.sync_batchnorm)
        return self

    def __exit__(self, *exc):
        if self._undo is not None and exc[0] is None:
            self._undo()
        if self.plan.fast:
            for net in (self.model, *self.frozen):
                net.to(memory_format=torch.contiguous_format)
        self._stack.close()
        return False

    def resident(self, images: torch.Tensor) -> torch.Tensor:
        """The training images where the steps read them: on the device for the fast path."""
        return images.to(self.device) if self.plan.fast else images

    def autocast(self):
        """The forward passes' autocast region (bfloat16 on the fast path when planned)."""
        if self.plan.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the device (channels_last on the fast path)."""
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.plan.fast else x

    def rows(self, n: int, device) -> torch.Tensor | None:
        """This rank's slice of a global batch of ``n`` (None in a single process)."""
        if self.plan.world_size == 1:
            return None
        return torch.arange(n, device=device).tensor_split(self.plan.world_size)[self.plan.rank]

    def labels(self, n: int) -> torch.Tensor:
        """``n`` zeros then ``n`` ones on the device, made there once per batch size."""
        if n not in self._labels:
            labels = torch.zeros(2 * n, device=self.device)
            labels[n:] = 1.0
            self._labels[n] = labels
        return self._labels[n]

    def loop_options(self) -> dict:
        """The :func:`run_epochs` options of this plan."""
        return {"min_batch": 2 * self.plan.world_size, "live_loss": not self.plan.fast}


# -- one training step of the standard path, as public functions (the notebooks run one by hand) ----
def _device_of(module: torch.nn.Module, device):
    return torch.device(device) if device is not None else next(module.parameters()).device


def autoencoder_loss(autoencoder, clean: torch.Tensor, noise: NoiseAugment | None = None,
                     generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    r"""The loss of one autoencoder step: :math:`\frac{1}{NCHW}\sum |D(E(\tilde I)) - I|` (the paper's
    equation 1), with :math:`\tilde I` the noisy input when ``noise`` is given and :math:`I` the clean target.

    What every step of :func:`train_autoencoder`'s standard path computes (forward pass only: the
    caller runs ``backward`` and the optimiser).

    Parameters
    ----------
    autoencoder : ood_helpers.models.AutoEncoder
        In train mode for a training step (BatchNorm batch statistics), eval mode to only look.
    clean : torch.Tensor (B, C, 32, 32), float in [0, 1], on the CPU
        A mini-batch of in-distribution images; B >= 2 in train mode (BatchNorm).
    noise : NoiseAugment or None
        The paper's noise-addition augmentation on the input (the target stays clean); None = none.
    generator : torch.Generator or None
        Draws the noise (None = torch's global generator).
    device : str, torch.device or None
        Where the forward pass runs; None = the autoencoder's device.

    Returns
    -------
    torch.Tensor
        A scalar: the mean absolute error, >= 0 (about 0.1-0.2 for an untrained network on [0, 1] images).

    Raises
    ------
    RuntimeError
        From torch, when ``clean`` does not fit the network (channels, size).
    """
    device = _device_of(autoencoder, device)
    corrupted = noise(clean, generator) if noise is not None else clean
    reconstruction, _ = autoencoder(corrupted.to(device))
    return F.l1_loss(reconstruction, clean.to(device))


def classifier_batch(images: torch.Tensor, index: torch.Tensor, families=None, noise: NoiseAugment | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One mini-batch of the classifier: in-distribution images (label 0) and as many synthetic
    outliers (label 1), with noise augmentation on both halves alike.

    The outliers are ours, not the paper's: the paper does not say where its classifier's "out"
    examples come from. Each is made (:func:`~ood_helpers.outliers.make_outliers`) from a randomly
    drawn in-distribution training image, so no real outlier is ever seen. Random numbers are
    drawn in this order: partner images, outlier families and parameters, then the noise.

    Parameters
    ----------
    images : torch.Tensor (N, C, 32, 32), float in [0, 1], on the CPU
        The classifier's in-distribution training images.
    index : torch.Tensor (B,) of int64
        Positions in ``images`` of this batch's in-distribution half.
    families : sequence of str or None
        Outlier families (None = every family for C channels).
    noise : NoiseAugment or None
        The paper's noise-addition augmentation, on both halves (None = none).
    generator : torch.Generator or None
        Draws partners, outliers and noise (None = torch's global generator).

    Returns
    -------
    (torch.Tensor (2B, C, 32, 32) in [0, 1], torch.Tensor (2B,) of float 0.0 / 1.0)
        The batch on the CPU, in-distribution images first, and its labels (1 = out).

    Raises
    ------
    InputError
        An unknown outlier family.
    """
    partners = torch.randint(len(images), (len(index),), generator=generator)
    outliers, _ = make_outliers(images[partners], families, generator)
    batch = torch.cat([images[index], outliers])
    if noise is not None:
        batch = noise(batch, generator)
    labels = torch.cat([torch.zeros(len(index)), torch.ones(len(index))])
    return batch, labels


def classifier_loss(classifier, autoencoder, batch: torch.Tensor, labels: torch.Tensor, device=None) -> torch.Tensor:
    r"""The loss of one classifier step (the paper's equation 2): binary cross-entropy of the
    classifier's logit on the difference image :math:`|I - D(E(I))|`, with :math:`z = E(I)` as the
    auxiliary input when the classifier was built with ``latent_input=True`` (ignored otherwise).

    What every step of :func:`train_classifier`'s standard path computes (forward pass only). The
    autoencoder runs under ``no_grad``: it is frozen.

    Parameters
    ----------
    classifier : ood_helpers.models.DifferenceClassifier
    autoencoder : ood_helpers.models.AutoEncoder
        Trained, in eval mode.
    batch : torch.Tensor (B, C, 32, 32), float in [0, 1]
        E.g. from :func:`classifier_batch`.
    labels : torch.Tensor (B,), float 0.0 (in) / 1.0 (out)
    device : str, torch.device or None
        Where the forward passes run; None = the classifier's device.

    Returns
    -------
    torch.Tensor
        A scalar, >= 0 (log 2 = 0.693 for a classifier that cannot tell the halves apart).

    Raises
    ------
    RuntimeError
        From torch, when the batch does not fit the networks.
    """
    device = _device_of(classifier, device)
    labels = labels.to(device)
    batch = batch.to(device)
    with torch.no_grad():
        reconstruction, z = autoencoder(batch)
    logits = classifier(difference_image(batch, reconstruction), z)
    return F.binary_cross_entropy_with_logits(logits, labels)


def _train_stage(model, images: torch.Tensor, preset: Preset, epochs: int, name: str, generator: torch.Generator,
                 device, noise: NoiseAugment | None, plan: TrainingPlan | None, standard_step, staged, frozen=(),
                 **loop) -> list[float]:
    """The skeleton every training stage shares: the standard path calls ``standard_step(index)``
    per batch; the fast path and DDP go through a :class:`_StageContext`, where
    ``staged(stage, data, augment)`` returns ``(loss_of, inputs_of)``: the forward pass and loss
    (compiled when planned) and the arguments it takes for a batch of indices. ``loop`` is
    ``state_path``, ``progress``, ``on_epoch_end`` and ``identity`` of :func:`run_epochs`."""
    plan = training_plan(preset, device) if plan is None else plan
    schedule = dict(generator=generator, name=name, **loop, **preset_schedule(preset, epochs))
    if not plan.fast and plan.world_size == 1:
        return run_epochs(model, standard_step, len(images), **schedule)

    with _StageContext(model, plan, device, generator, frozen=frozen) as stage:
        augment = None if noise is None else (noise.batched if plan.fast else noise)
        loss_of, inputs_of = staged(stage, stage.resident(images), augment)
        loss_function = _LossFunction(loss_of, plan.compile, name)

        def step(index):
            return loss_function(*inputs_of(index))

        step.fallback = loss_function.fallback
        return run_epochs(model, step, len(images), **{**schedule, "generator": stage.generator},
                          **stage.loop_options())


def train_autoencoder(autoencoder, images: torch.Tensor, preset: Preset, generator: torch.Generator,
                      device, noise: NoiseAugment | None = None, state_path=None, progress=True,
                      on_epoch_end=None, identity: dict | None = None, plan: TrainingPlan | None = None) -> list[float]:
    """Train E and D with the L1 reconstruction loss :math:`|I - D(E(I))|_1` (equation 1 of the paper).

    With ``noise`` the input is corrupted and the target stays clean (a denoising autoencoder), so
    a noisy in-distribution image is still reconstructed as its clean self.

    Parameters
    ----------
    autoencoder : ood_helpers.models.AutoEncoder
        On ``device``; trained in place.
    images : torch.Tensor (N, C, 32, 32), float in [0, 1], on the CPU
        The standard path moves each batch to ``device``; the fast path moves them all once.
    preset : Preset
        Optimiser, schedule, batch size and the fast-path switches.
    generator : torch.Generator (CPU)
        Draws everything random (on the fast path through a device generator it seeds).
    device : torch.device
    noise : NoiseAugment or None
    state_path, progress, on_epoch_end, identity
        As for :func:`run_epochs`.
    plan : TrainingPlan or None
        None = :func:`training_plan` of ``preset`` and ``device``.

    Returns
    -------
    list of float
        The mean loss of every epoch.

    Raises
    ------
    TrainingDivergedError
        When the loss is not finite.
    """
    def standard_step(index):   # the standard path: one call of autoencoder_loss per batch
        return autoencoder_loss(autoencoder, images[index], noise, generator, device)

    def staged(stage, data, augment):
        def loss_of(inputs, targets):
            with stage.autocast():
                reconstruction, _ = stage.module(inputs)
            return F.l1_loss(reconstruction.float(), targets)

        def inputs_of(index):
            clean = data[index]
            corrupted = augment(clean, stage.generator) if augment is not None else clean
            rows = stage.rows(len(index), clean.device)
            if rows is not None:
                clean, corrupted = clean[rows], corrupted[rows]
            return stage.inputs(corrupted), stage.inputs(clean)
        return loss_of, inputs_of

    return _train_stage(autoencoder, images, preset, preset.ae_epochs, "autoencoder", generator, device, noise, plan,
                        standard_step, staged, state_path=state_path, progress=progress,
                        on_epoch_end=on_epoch_end, identity=identity)


def train_classifier(classifier, autoencoder, images: torch.Tensor, preset: Preset, generator: torch.Generator,
                     device, noise: NoiseAugment | None = None, families=None, state_path=None, progress=True,
                     on_epoch_end=None, identity: dict | None = None, plan: TrainingPlan | None = None) -> list[float]:
    """Train the in/out classifier with cross-entropy (equation 2 of the paper).

    Every batch holds ``batch_size`` in-distribution images (label 0) and as many synthetic
    outliers made from other in-distribution images (label 1). Noise augmentation, when on, hits
    both halves alike, so noise never tells the classes apart. The autoencoder is not updated.

    Parameters
    ----------
    classifier : ood_helpers.models.DifferenceClassifier
        On ``device``; trained in place.
    autoencoder : ood_helpers.models.AutoEncoder
        Trained, frozen (run under ``no_grad`` in eval mode).
    images : torch.Tensor (N, C, 32, 32), float in [0, 1], on the CPU, in-distribution only
    preset, generator, device, noise, state_path, progress, on_epoch_end, identity, plan
        As for :func:`train_autoencoder`.
    families : sequence of str or None
        Outlier families (None = every family for C channels).

    Returns
    -------
    list of float
        The mean loss of every epoch.

    Raises
    ------
    TrainingDivergedError
        When the loss is not finite.
    """
    autoencoder.eval()  # frozen by running it under no_grad; its parameters stay trainable

    def standard_step(index):   # the standard path: classifier_batch, then classifier_loss
        batch, labels = classifier_batch(images, index, families, noise, generator)
        return classifier_loss(classifier, autoencoder, batch, labels, device)

    def staged(stage, data, augment):
        make = make_outliers_batched if stage.plan.fast else make_outliers

        def loss_of(batch, labels):
            with torch.no_grad(), stage.autocast():
                reconstruction, z = autoencoder(batch)
            with stage.autocast():
                logits = stage.module(difference_image(batch, reconstruction.float()), z.float())
            return F.binary_cross_entropy_with_logits(logits.float(), labels)

        def inputs_of(index):
            n = len(index)
            partners = torch.randint(len(images), (n,), generator=stage.generator, device=index.device)
            outliers, _ = make(data[partners], families, stage.generator)
            batch = torch.cat([data[index], outliers])
            if augment is not None:
                batch = augment(batch, stage.generator)
            labels = stage.labels(n)
            rows = stage.rows(n, batch.device)
            if rows is not None:   # this rank's in-distribution slice and the outliers made from it
                rows = torch.cat([rows, rows + n])
                batch, labels = batch[rows], labels[rows.to(labels.device)]
            return stage.inputs(batch), labels
        return loss_of, inputs_of

    return _train_stage(classifier, images, preset, preset.clf_epochs, "classifier", generator, device, noise, plan,
                        standard_step, staged, frozen=(autoencoder,), state_path=state_path, progress=progress,
                        on_epoch_end=on_epoch_end, identity=identity)


# -- ours, not the paper's: the rotation-prediction network (semantic novelty, notebook 08) ----------
ROTATION_MAX_SHIFT = 2   # pixels: the random translation of rotation training (Hendrycks et al. 2019 use crops too)


def rotation_augment(images: torch.Tensor, generator: torch.Generator | None = None,
                     max_shift: int = ROTATION_MAX_SHIFT) -> torch.Tensor:
    """What rotation training does to each image before turning it: a random translation of up to
    ``max_shift`` pixels each way (reflected at the border) and, for colour images, a random
    horizontal flip (an upright image stays upright). Without it a small network learns shortcuts
    to "which way is up" (exact pixel positions) instead of what objects look like: measured on
    MNIST classes 0-4, the feature distance fell from 0.89 to 0.70 AUROC.

    Parameters
    ----------
    images : torch.Tensor (N, C, H, W), float, on any device
    generator : torch.Generator or None
        On the images' device (None = its default generator); nothing waits for the device.
    max_shift : int >= 0

    Returns
    -------
    torch.Tensor (N, C, H, W), the same dtype and device

    Raises
    ------
    InputError
        When ``max_shift`` is not an int >= 0.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        from .validation import InputError
        raise InputError(f"max_shift: expected an int >= 0 (pixels), got {max_shift!r}. Fix: max_shift=2.")
    n, c, h, w = images.shape
    device = images.device
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator, device=device)
    theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 2 * shift[:, 0] / w
    theta[:, 1, 2] = 2 * shift[:, 1] / h
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    moved = F.grid_sample(images, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    if c == 3:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        moved = torch.where(flip.view(-1, 1, 1, 1), moved.flip(3), moved)
    return moved


def rotation_loss(net, images: torch.Tensor, noise: NoiseAugment | None = None,
                  generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    r"""The loss of one rotation-prediction step: the cross-entropy of predicting, for every image
    of the batch turned by 0, 90, 180 and 270 degrees, which turn it was (Gidaris et al. 2018),
    averaged over the 4B rotated images.

    Parameters
    ----------
    net : ood_helpers.models.RotationNet
    images : torch.Tensor (B, C, 32, 32), float in [0, 1], on the CPU
        In-distribution images, upright; B >= 2 in train mode (BatchNorm). They are shifted (and
        flipped) by :func:`rotation_augment` first.
    noise : NoiseAugment or None
        Noise augmentation before rotating (the rotation loss of a noisy in-distribution image
        should stay low); None = none.
    generator : torch.Generator or None
        Draws the shifts, flips and noise.
    device : str, torch.device or None
        Where the forward pass runs; None = the network's device.

    Returns
    -------
    torch.Tensor
        A scalar >= 0, in nats (log 4 = 1.386 for a network that guesses).
    """
    device = _device_of(net, device)
    images = rotation_augment(images, generator)
    if noise is not None:
        images = noise(images, generator)
    rotated, labels = rotate_batch(images.to(device))
    return F.cross_entropy(net(rotated), labels)


@torch.no_grad()
def rotation_score(net, images, device=None, batch_size: int = 250) -> torch.Tensor:
    r"""The self-supervised OOD score of Hendrycks et al. (2019) in its one-class form (their
    section 4.2, rotation prediction only):

    .. math:: s_{rot}(x) = -\sum_{k=0}^{3} \log p_\theta(k \mid R_k(x)),

    the summed cross-entropy of predicting each of the four rotations :math:`R_k` of the image.

    Parameters
    ----------
    net : ood_helpers.models.RotationNet
        Trained; run in eval mode.
    images : (N, C, 32, 32) images, float in [0, 1] or uint8 (as every scoring entry point takes)
    device : str, torch.device or None
        None = the network's device.
    batch_size : int > 0
        Images per forward pass (4 x batch_size rotated images): memory is bounded by it.

    Returns
    -------
    torch.Tensor (N,), float32 on the CPU
        In nats, >= 0; 4 log 4 = 5.55 for an image whose rotations the network cannot tell apart.
        Higher = more out-of-distribution.

    Raises
    ------
    InputError
        Images of the wrong shape, type or channels for ``net``, or a bad ``batch_size``.
    """
    from .validation import check_batch_size, iter_image_batches

    device = _device_of(net, device)
    net.eval()
    scores = []
    for batch in iter_image_batches(images, net.trunk.stem[0].in_channels, "images", check_batch_size(batch_size)):
        rotated, labels = rotate_batch(batch.to(device))
        losses = F.cross_entropy(net(rotated).float(), labels, reduction="none")
        scores.append(losses.view(4, len(batch)).sum(0).cpu())
    return torch.cat(scores)


def train_rotation(net, images: torch.Tensor, preset: Preset, generator: torch.Generator, device,
                   noise: NoiseAugment | None = None, state_path=None, progress=True, on_epoch_end=None,
                   identity: dict | None = None, plan: TrainingPlan | None = None) -> list[float]:
    """Train the rotation-prediction network for ``preset.rotation_epochs`` epochs (ours, not the paper's).

    Each step turns ``batch_size`` in-distribution images four ways and learns which turn each
    is (:func:`rotation_loss`). The optimiser and schedule are the preset's. On the fast path the
    images stay on the device and the noise is made there; under torchrun each rank takes its
    slice of every batch (DistributedDataParallel).

    Parameters
    ----------
    net : ood_helpers.models.RotationNet
        On ``device``; trained in place.
    images : torch.Tensor (N, C, 32, 32), float in [0, 1], on the CPU, in-distribution only
    preset, generator, device, noise, state_path, progress, on_epoch_end, identity, plan
        As for :func:`train_autoencoder`.

    Returns
    -------
    list of float
        The mean loss of every epoch.

    Raises
    ------
    TrainingDivergedError
        When the loss is not finite.
    """
    def standard_step(index):   # the standard path: one call of rotation_loss per batch
        return rotation_loss(net, images[index], noise, generator, device)

    def staged(stage, data, augment):
        def loss_of(rotated, labels):
            with stage.autocast():
                logits = stage.module(rotated)
            return F.cross_entropy(logits.float(), labels)

        def inputs_of(index):
            batch = rotation_augment(data[index], stage.generator)
            if augment is not None:
                batch = augment(batch, stage.generator)
            rows = stage.rows(len(index), batch.device)
            if rows is not None:
                batch = batch[rows]
            rotated, labels = rotate_batch(batch)
            return stage.inputs(rotated), labels.to(stage.device)
        return loss_of, inputs_of

    return _train_stage(net, images, preset, preset.rotation_epochs, "rotation", generator, device, noise, plan,
                        standard_step, staged, state_path=state_path, progress=progress,
                        on_epoch_end=on_epoch_end, identity=identity)


# -- the anti-pattern of notebook 04: a classifier trained on the test OOD set ---------------------
class CheatingClassifier:
    """A difference-image classifier trained with *real* OOD images as its "out" class.

    DO NOT USE FOR RESULTS: it exists to show, in notebook 04, what training on the test OOD set
    would pretend. Built by :func:`train_cheating_classifier`; it scores images exactly like the
    real classifier of an :class:`~ood_helpers.OODDetector` (difference image and z from the
    detector's frozen autoencoder), without calibration or latent distance.

    Attributes
    ----------
    detector_ : ood_helpers.OODDetector
        The fitted detector whose autoencoder it reads.
    classifier_ : ood_helpers.models.DifferenceClassifier
    history_ : list of float
        Mean training loss (binary cross-entropy) per epoch.
    """

    def __init__(self, detector, classifier, history: list):
        self.detector_, self.classifier_, self.history_ = detector, classifier, history

    @torch.no_grad()
    def decision_function(self, images, batch_size: int = 256):
        """The classifier's logit per image: higher = more out-of-distribution.

        Parameters
        ----------
        images : torch.Tensor, numpy array or map-style Dataset
            (N, C, 32, 32) float in [0, 1] or uint8 0-255, C = the detector's channels.
        batch_size : int > 0

        Returns
        -------
        numpy.ndarray of float64, shape (N,)
            Unbounded logits.

        Raises
        ------
        InputError
            Bad images or batch size.
        """
        from .validation import check_batch_size, iter_image_batches

        batch_size = check_batch_size(batch_size)
        autoencoder, device = self.detector_.autoencoder_.eval(), self.detector_.device_
        self.classifier_.eval()
        logits = []
        for batch in iter_image_batches(images, self.detector_.in_channels_, "images", batch_size):
            batch = batch.to(device)
            reconstruction, z = autoencoder(batch)
            logits.append(self.classifier_(difference_image(batch, reconstruction), z).float().cpu())
        return torch.cat(logits).double().numpy()

    def __repr__(self):
        return f"CheatingClassifier(trained {len(self.history_)} epochs on real OOD images; do not do this)"


def train_cheating_classifier(detector, in_images, ood_images, epochs: int | None = None, seed: int = 0,
                              progress: bool = True) -> CheatingClassifier:
    """DO NOT USE FOR RESULTS: the anti-pattern notebook 04 warns about.

    Trains a fresh classifier of the detector's architecture (difference image + z, on the
    detector's frozen autoencoder) with ``in_images`` as class 0 and *real* out-of-distribution
    images ``ood_images`` as class 1, instead of synthetic outliers. Each step pairs a mini-batch
    of in images with as many OOD images drawn at random. Same optimiser, schedule and loop
    (:func:`run_epochs`) as the real classifier, no noise augmentation.

    Parameters
    ----------
    detector : ood_helpers.OODDetector
        A fitted detector; its autoencoder is used, never changed.
    in_images, ood_images : (N, C, 32, 32) and (M, C, 32, 32)
        Float in [0, 1] or uint8 0-255, C = the detector's channels; N >= 2, M >= 1.
    epochs : int or None
        Defaults to the detector preset's classifier epochs.
    seed : int >= 0
        Seeds weights, batch order and OOD partners; the global random state is restored after.
    progress : bool
        Show a progress bar per epoch.

    Returns
    -------
    CheatingClassifier

    Raises
    ------
    NotFittedError
        When ``detector`` is not fitted.
    InputError
        Bad images, seed or epochs.
    TrainingDivergedError
        When the loss becomes NaN or infinite.
    """
    from .api import check_seed, seeded
    from .detector import OODDetector
    from .models import DifferenceClassifier
    from .validation import InputError, as_image_batch, check_positive_int

    if not isinstance(detector, OODDetector):
        raise InputError(f"detector: expected a fitted OODDetector, got {type(detector).__name__}.")
    detector._check_fitted("train_cheating_classifier")
    seed = check_seed(seed)
    channels, preset, device = detector.in_channels_, detector.preset_, detector.device_
    epochs = preset.clf_epochs if epochs is None else check_positive_int(epochs, "epochs")
    in_images = as_image_batch(in_images, channels, "in_images")
    ood_images = as_image_batch(ood_images, channels, "ood_images")
    if len(in_images) < 2:
        raise InputError(f"in_images: expected at least 2 images, got {len(in_images)}.")
    autoencoder = detector.autoencoder_.eval()
    with torch.enable_grad(), seeded(seed) as generator:
        classifier = DifferenceClassifier(channels, preset.width, preset.latent_dim, preset.stem, True,
                                          detector.inject_stage).to(device)

        def step(index):
            partners = torch.randint(len(ood_images), (len(index),), generator=generator)
            batch = torch.cat([in_images[index], ood_images[partners]]).to(device)
            labels = torch.cat([torch.zeros(len(index)), torch.ones(len(index))]).to(device)
            with torch.no_grad():
                reconstruction, z = autoencoder(batch)
            logits = classifier(difference_image(batch, reconstruction), z)
            return F.binary_cross_entropy_with_logits(logits, labels)

        history = run_epochs(classifier, step, len(in_images), generator=generator, name="cheating classifier",
                             progress=progress, **preset_schedule(preset, epochs))
    return CheatingClassifier(detector, classifier, history)
