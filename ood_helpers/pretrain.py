"""Train once, load many: every detector the notebooks use, trained once into a folder that a
whole class then reads through ``OOD_PRETRAINED_DIR``.

    python -m ood_helpers pretrain --preset classroom --out /srv/ood-pretrained
    chmod -R a+rX /srv/ood-pretrained
    export OOD_PRETRAINED_DIR=/srv/ood-pretrained    # in every student's environment

The folder has the layout of the per-user artifacts folder
(``<preset>/<setting>/detector_<variant>_seed<seed>.pt``, :func:`ood_helpers.artifacts.detector_relpath`),
so what ``pretrain --out DIR`` writes is exactly what ``OOD_PRETRAINED_DIR=DIR`` reads.
A detector already in the folder and matching (same training images, channels, configuration)
is skipped; an interrupted run resumes where it stopped, from the per-epoch state kept in
``train_state/`` beside the files (presets with ``checkpoint_every_epoch``), removed once every
detector is saved. Variants of one seed that share an autoencoder (``paper-no-aux``, ``paper``,
``ours``) train it once: the later ones resume its finished state.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from .api import check_seed, fingerprint
from .artifacts import STATE_DIR, detector_relpath, get_data, load_or_train
from .data import CHANNELS, PAPER_SETTINGS, SETTINGS
from .files import check_output_dir
from .presets import get_preset
from .validation import InputError, check_choice
from .variants import VARIANTS
from .detector import build_detector

# what notebooks 02-07 ask artifacts.get_detector for (seed 0), in both paper settings and on the
# Fashion-MNIST / MNIST pair (where the ablations have room below 1.0): the paper's method, its two
# Table 3 ablations, and ours (the paper + our two latent distances)
NOTEBOOK_SETTINGS = PAPER_SETTINGS + ("fmnist-mnist",)
NOTEBOOK_VARIANTS = ("paper-no-aux", "paper", "paper-no-noise", "ours")
# and what notebook 08 (and the class-split comparisons) ask for: the paper's method and ours with and
# without the rotation score, on both class splits
NEAR_SETTINGS = ("mnist-near", "cifar10-near")
NEAR_VARIANTS = ("paper", "ours", "ours-rotation")


def notebook_plan(seeds=(0,)) -> list[tuple[str, int, str]]:
    """Every detector the notebooks use: :func:`plan` of the paper settings and
    :data:`NOTEBOOK_VARIANTS` (notebooks 02-07), then of :data:`NEAR_SETTINGS` and
    :data:`NEAR_VARIANTS` (notebook 08); 18 detectors for one seed.

    Raises
    ------
    InputError
        A bad seed or an empty selection.
    """
    return plan(NOTEBOOK_SETTINGS, seeds, NOTEBOOK_VARIANTS) + plan(NEAR_SETTINGS, seeds, NEAR_VARIANTS)


def plan(settings=NOTEBOOK_SETTINGS, seeds=(0,), variants=NOTEBOOK_VARIANTS) -> list[tuple[str, int, str]]:
    """The detectors :func:`pretrain` makes, in order: (setting, seed, variant) for every combination.

    Parameters
    ----------
    settings : sequence of str
        Keys of :data:`ood_helpers.data.SETTINGS`.
    seeds : sequence of int >= 0
    variants : sequence of str
        Keys of :data:`ood_helpers.variants.VARIANTS` (paper, paper-no-aux, paper-no-noise, ours,
        ours-distance-only).

    Returns
    -------
    list of (str, int, str)

    Raises
    ------
    InputError
        An unknown setting or variant, a bad seed, or an empty selection (named as such).
    """
    for name, values in (("settings", settings), ("seeds", seeds), ("variants", variants)):
        if isinstance(values, (str, int)) or not len(values):
            raise InputError(f"{name}: expected a non-empty list, got {values!r}. Fix: e.g. {name}="
                             f"{list(NOTEBOOK_SETTINGS) if name == 'settings' else [0] if name == 'seeds' else ['paper']}.")
    settings = [check_choice(s, tuple(SETTINGS), "settings") for s in settings]
    seeds = [check_seed(s, "seeds") for s in seeds]
    variants = [check_choice(v, tuple(VARIANTS), "variants") for v in variants]
    return [(s, seed, v) for s in dict.fromkeys(settings) for seed in dict.fromkeys(seeds) for v in dict.fromkeys(variants)]


def pretrain(out_dir, preset=None, settings=None, seeds=(0,), variants=None,
             progress: bool = True, download: bool | None = None) -> list[dict]:
    """Train every requested detector once into ``out_dir`` (skipping those already there).

    Parameters
    ----------
    out_dir : str or Path
        The folder to fill; checked to be writable before anything is loaded or trained.
    preset : preset name or :class:`~ood_helpers.presets.Preset` (None = ``$OOD_PRESET`` / auto).
    settings, seeds, variants : sequences or None
        See :func:`plan`. When ``settings`` and ``variants`` are both None (the default): what the
        notebooks use, :func:`notebook_plan` (18 detectors for seed 0: both paper settings and
        Fashion-MNIST in / MNIST out with paper-no-aux, paper, paper-no-noise and ours; both class splits with paper, ours and
        ours-rotation). When only one is None, it is :data:`NOTEBOOK_SETTINGS` or
        :data:`NOTEBOOK_VARIANTS`.
    progress : bool
        Progress bars while training.
    download : bool or None
        Passed to :func:`ood_helpers.artifacts.get_data`.

    Returns
    -------
    list of dict
        One record per detector: setting, seed, variant, file (relative to ``out_dir``), action
        (``"present"``, ``"trained"`` or ``"retrained"``) and seconds (wall time of this step).

    Raises
    ------
    InputError
        Bad arguments; :class:`ood_helpers.files.OutputPathError` when ``out_dir`` cannot be
        written (before any training).
    DatasetNotFoundError
        When a setting's data is missing (checked for every setting before any training).
    ood_helpers.loop.TrainingDivergedError
        When a training run diverges (detectors finished before it are kept).
    """
    if settings is None and variants is None:
        jobs = notebook_plan(seeds)
    else:
        jobs = plan(NOTEBOOK_SETTINGS if settings is None else settings, seeds,
                    NOTEBOOK_VARIANTS if variants is None else variants)
    preset = get_preset(preset)
    try:
        out = check_output_dir(out_dir)
    except InputError as err:
        raise type(err)(f"--out: {err}") from None
    data = {}
    for setting in dict.fromkeys(s for s, _, _ in jobs):  # every dataset is there before anything trains
        data[setting, jobs[0][1]] = get_data(setting, preset, jobs[0][1], download=download)
    loaded = dict(data)
    print(f"pretrain: {len(jobs)} detector(s), preset {preset.name}, into '{out}'", flush=True)
    records, start, used_states = [], time.perf_counter(), set()
    for number, (setting, seed, variant) in enumerate(jobs, 1):
        if (setting, seed) not in data:
            data = {**loaded, (setting, seed): get_data(setting, preset, seed, download=download)}
        current = data[setting, seed]
        channels = CHANNELS[SETTINGS[setting]["in_data"]]
        wanted = build_detector(variant, channels, preset, seed, progress)
        relpath = detector_relpath(setting, preset, seed, variant)
        path = out / relpath
        step = time.perf_counter()
        _, action = load_or_train(path, wanted, current, channels, fingerprint(current.in_train),
                                  relpath.as_posix(), progress=progress, verbose=False)
        seconds = time.perf_counter() - step
        used_states.add(path.parent / STATE_DIR)
        action = "present" if action == "loaded" else action
        records.append({"setting": setting, "seed": seed, "variant": variant, "file": relpath.as_posix(),
                        "action": action, "seconds": round(seconds, 1)})
        said = "present and matching, skipped" if action == "present" else f"{action} in {seconds:.0f} s"
        print(f"[{number}/{len(jobs)}] {relpath.as_posix()}: {said}", flush=True)
    for folder in used_states:   # every detector is saved: the states an interruption would resume are done with
        shutil.rmtree(folder, ignore_errors=True)
    for record in records:       # nor are the locks that kept two trainers of one detector apart
        Path(f"{out / record['file']}.lock").unlink(missing_ok=True)
    trained = sum(r["action"] != "present" for r in records)
    print(f"pretrain: done in {time.perf_counter() - start:.0f} s ({trained} trained, {len(records) - trained} "
          f"already present). Students read them with: export OOD_PRETRAINED_DIR='{Path(out).resolve()}' "
          f"(make it readable to them: chmod -R a+rX '{Path(out).resolve()}')", flush=True)
    return records


__all__ = ["pretrain", "plan", "notebook_plan", "NOTEBOOK_SETTINGS", "NOTEBOOK_VARIANTS", "NEAR_SETTINGS",
           "NEAR_VARIANTS"]
