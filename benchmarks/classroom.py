"""Classroom timing (issue 14): train once with ``pretrain``, then run the series against a
read-only shared folder of pretrained detectors, one kernel alone and several at once.

    python benchmarks/classroom.py --preset classroom --kernels 4 --out results/classroom

1. ``python -m ood_helpers pretrain --preset P --out WORK/pretrained``: wall time per detector and in all
   (skipped with ``--pretrained DIR``, which uses an existing folder as it is);
2. the folder is made read-only (write bits removed) and fingerprinted (size, mtime, SHA-256 of every file);
3. the series (``notebooks/0*.ipynb``, copied to a temporary folder) executed with
   ``jupyter nbconvert --execute`` in one kernel at a time, ``OOD_PRETRAINED_DIR`` set and a fresh
   ``OOD_ARTIFACTS``: seconds per notebook;
4. ``--kernels`` copies of the series executed at the same time, each with its own ``OOD_ARTIFACTS``,
   against the one shared folder;
5. checks: every notebook finished; no line says "trained in" or "pretrained detector not used" and
   nothing was saved in the per-user artifacts folders (the notebooks load quietly, so that is the
   evidence that every detector came from the shared folder); the shared folder is byte-for-byte
   unchanged; every detector file in it still loads (content hash verified).

Writes ``OUT/benchmark.json`` and ``OUT/benchmark.md`` with the exact command. The data comes from
``OOD_DATA_DIR`` (or the per-user folder) as for the notebooks.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOADED = re.compile(r"^loaded \$OOD_PRETRAINED_DIR/\S+ \(pretrained, read-only\)$")
TRAINED = re.compile(r"^(trained in \d+ s and saved|retraining:)")
FALLBACK = re.compile(r"^pretrained detector not used:")
PRETRAIN_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+): (?:(trained|retrained) in (\d+) s|present and matching, skipped)$")


def fingerprint_folder(folder: Path) -> dict:
    """Every entry under ``folder``: kind, size, mtime and (files) SHA-256."""
    entries = {}
    for path in sorted([folder, *folder.rglob("*")]):
        info = path.lstat()
        entry = {"mode": oct(stat.S_IMODE(info.st_mode)), "mtime_ns": info.st_mtime_ns}
        if path.is_file():
            entry.update(size=info.st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        entries[path.relative_to(folder).as_posix()] = entry
    return entries


def make_read_only(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)


def run_pretrain(preset: str, out: Path, env: dict) -> dict:
    command = [sys.executable, "-m", "ood_helpers", "pretrain", "--preset", preset, "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pretrain failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return parse_pretrain(done.stdout, preset, wall)


def parse_pretrain(stdout: str, preset: str, wall_seconds: float | None = None) -> dict:
    """What a ``pretrain`` printed: every detector's action and seconds, and the wall time (measured
    around the process, else the seconds of its closing 'pretrain: done in N s' line)."""
    detectors = []
    for line in stdout.splitlines():
        match = PRETRAIN_LINE.match(line.strip())
        if match:
            detectors.append({"file": match[3], "action": match[4] or "present",
                              "seconds": int(match[5]) if match[5] else 0})
        done = re.match(r"^pretrain: done in (\d+) s", line.strip())
        if done and wall_seconds is None:
            wall_seconds = float(done[1])
    if not detectors or wall_seconds is None:
        raise SystemExit("the pretrain output holds no detector lines or no 'pretrain: done in N s' line")
    return {"command": "python -m ood_helpers pretrain --preset " + preset + " --out <shared folder> --no-progress",
            "wall_seconds": round(wall_seconds, 1), "detectors": detectors, "stdout_tail": stdout[-1500:]}


def _stream_lines(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    lines = []
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                lines += ("".join(text) if isinstance(text, list) else text).splitlines()
    return lines


def run_series(notebooks: list[Path], work: Path, env: dict, timeout: int) -> dict:
    """Execute the notebooks one after another in copies under ``work``; time and check each."""
    (work / "notebooks").mkdir(parents=True)
    (work / "results").symlink_to(ROOT / "results")           # notebook 07 reads ../results
    for notebook in notebooks:
        shutil.copy2(notebook, work / "notebooks" / notebook.name)
    env = {**env, "OOD_ARTIFACTS": str(work / "artifacts")}
    rows, start = [], time.perf_counter()
    for notebook in notebooks:
        copy = work / "notebooks" / notebook.name
        command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                   f"--ExecutePreprocessor.timeout={timeout}", copy.name]
        began = time.perf_counter()
        done = subprocess.run(command, cwd=copy.parent, env=env, capture_output=True, text=True)
        row = {"notebook": notebook.name, "seconds": round(time.perf_counter() - began, 1), "ok": done.returncode == 0}
        if done.returncode == 0:
            lines = _stream_lines(copy)
            row.update(loaded=sum(bool(LOADED.match(line)) for line in lines),
                       trained=sum(bool(TRAINED.match(line)) for line in lines),
                       fallback=[line for line in lines if FALLBACK.match(line)][:3])
        else:
            errors = [line.strip() for line in done.stderr.splitlines() if "Error" in line] or \
                done.stderr.strip().splitlines()[-1:] or ["(no message)"]
            row["error"] = errors[-1][:300]
        rows.append(row)
    written = sorted(p.relative_to(work / "artifacts").as_posix() for p in (work / "artifacts").rglob("*")) \
        if (work / "artifacts").exists() else []
    return {"rows": rows, "wall_seconds": round(time.perf_counter() - start, 1), "artifacts_written": written}


def check_detectors(folder: Path, env: dict) -> dict:
    """Load every detector file in a fresh process (content hash verified): {file: "ok" or the error}."""
    code = ("import json, sys; from pathlib import Path; from ood_helpers import OODDetector\n"
            "out = {}\n"
            "for p in sorted(Path(sys.argv[1]).rglob('*.pt')):\n"
            "    try:\n        OODDetector.load(p, progress=False); out[p.relative_to(sys.argv[1]).as_posix()] = 'ok'\n"
            "    except Exception as err:\n        out[p.relative_to(sys.argv[1]).as_posix()] = str(err)[:200]\n"
            "print(json.dumps(out))")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr[-500:]}


def recorded_training(folder: Path, env: dict) -> list:
    """The training seconds each detector file in ``folder`` recorded when it was fitted
    (``history_``): what a ``pretrain`` spent per detector, read back when the folder was made
    before this benchmark (``--pretrained``) without its printed output."""
    code = ("import json, sys; from pathlib import Path; from ood_helpers import OODDetector\n"
            "rows = []\n"
            "for p in sorted(Path(sys.argv[1]).rglob('*.pt')):\n"
            "    h = OODDetector.load(p, progress=False).history_\n"
            "    rows.append({'file': p.relative_to(sys.argv[1]).as_posix(), 'seconds': round(h['train_seconds'], 1),\n"
            "                 'autoencoder_epochs_run': len(h['epoch_seconds']['autoencoder']),\n"
            "                 'autoencoder_seconds': round(sum(h['epoch_seconds']['autoencoder']), 1),\n"
            "                 'classifier_seconds': round(sum(h['epoch_seconds']['classifier']), 1)})\n"
            "print(json.dumps(rows))")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not read the detector files of {folder}:\n{done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def markdown(results: dict) -> str:
    lines = ["# Classroom benchmark", "", f"Command: `{results['command']}`", "",
             f"Machine: {results['machine']}. Preset `{results['preset']}`. {results['date']}.", ""]
    pre = results.get("pretrain")
    if pre:
        lines += ["## pretrain (train once)", "", f"`{pre['command']}`: {pre['wall_seconds']:.0f} s wall "
                  f"({_minutes(pre['wall_seconds'])}) in all" + (f" (its output: `{pre['log']}`, run before this benchmark)" if pre.get("log") else "")
                  + ".", "", "| detector | action | seconds |", "| --- | --- | --- |"]
        lines += [f"| {d['file']} | {d['action']} | {d['seconds']} |" for d in pre["detectors"]]
        lines.append("")
    recorded = results.get("recorded_training")
    if recorded:
        total = sum(r["seconds"] for r in recorded)
        lines += ["## Training time recorded in the pretrained folder's files", "",
                  f"The folder (`--pretrained`) was made before this benchmark; each file records how long its fit "
                  f"took: {total:.0f} s ({_minutes(total)}) in all. A detector that resumed the finished autoencoder "
                  f"of another variant of its seed ran no autoencoder epoch.", "",
                  "| detector | training seconds | autoencoder epochs run | autoencoder seconds | classifier seconds |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['file']} | {r['seconds']:.0f} | {r['autoencoder_epochs_run']} | {r['autoencoder_seconds']:.0f} | "
                  f"{r['classifier_seconds']:.0f} |" for r in recorded]
        lines.append("")
    for key, title in (("serial", "One kernel: the series, notebook after notebook"),):
        if key not in results:
            continue
        run = results[key]
        lines += [f"## {title}", "", f"{run['wall_seconds']:.0f} s ({_minutes(run['wall_seconds'])}) in all.", "",
                  "| notebook | seconds | finished | 'loaded' lines printed | 'trained' lines printed |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r['notebook']} | {r['seconds']:.0f} | {'yes' if r['ok'] else 'no: ' + r.get('error', '')} | "
                  f"{r.get('loaded', '-')} | {r.get('trained', '-')} |" for r in run["rows"]]
        lines.append("")
    conc = results.get("concurrent")
    if conc:
        lines += [f"## {conc['kernels']} kernels at once, one shared folder", "",
                  f"All {conc['kernels']} series started together; the last finished after {conc['wall_seconds']:.0f} s "
                  f"({_minutes(conc['wall_seconds'])}).", "",
                  "| kernel | seconds | notebooks finished | loaded | trained |", "| --- | --- | --- | --- | --- |"]
        for index, run in enumerate(conc["runs"]):
            lines.append(f"| {index + 1} | {run['wall_seconds']:.0f} | {sum(r['ok'] for r in run['rows'])}/{len(run['rows'])} | "
                         f"{sum(r.get('loaded', 0) for r in run['rows'])} | {sum(r.get('trained', 0) for r in run['rows'])} |")
        lines.append("")
    if "checks" not in results:
        return "\n".join(lines + [f"Unfinished: this file was written after the step '{results.get('step')}'; "
                                   f"the run stopped or is still going.", ""])
    checks = results["checks"]
    lines += ["## Checks", ""] + [f"- {name}: {'yes' if ok else 'NO'}" for name, ok in checks.items()] + [""]
    runs = ([("one kernel", results["serial"])] if "serial" in results else []) + \
        [(f"kernel {i + 1}", run) for i, run in enumerate(conc["runs"] if conc else [])]
    failed = [f"{name}, {r['notebook']}: {r.get('error', '')}" for name, run in runs for r in run["rows"] if not r["ok"]]
    if failed:
        lines += ["Notebooks that did not finish:", ""] + [f"- {f}" for f in failed] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="classroom")
    parser.add_argument("--kernels", type=int, default=4, help="series executed at the same time (0: skip)")
    parser.add_argument("--out", default=str(ROOT / "results" / "classroom"))
    parser.add_argument("--pretrained", default=None, help="use this existing folder instead of running pretrain")
    parser.add_argument("--notebooks", nargs="+", default=None, help="default: notebooks/0*.ipynb")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("--pretrain-log", default=None,
                        help="with --pretrained: the saved output of the pretrain that made that folder, reported as step 1")
    parser.add_argument("--no-serial", action="store_true",
                        help="skip the one-kernel run (e.g. to run the concurrent kernels at another time)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notebooks = [Path(n).resolve() for n in args.notebooks] if args.notebooks else sorted((ROOT / "notebooks").glob("0*.ipynb"))
    work = Path(args.work or tempfile.mkdtemp(prefix="ood-classroom-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OOD_PRESET": args.preset, "PYTHONUNBUFFERED": "1"}
    env.pop("OOD_ARTIFACTS", None)
    import torch

    results = {"command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "preset": args.preset,
               "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
                          f"torch {torch.__version__} ({torch.get_num_threads()} threads per process)",
               "notebooks": [n.name for n in notebooks]}
    def save(step):  # after every step, so that a stopped run keeps what it measured
        results["step"] = step
        (out / "benchmark.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "benchmark.md").write_text(markdown(results) + "\n")

    if args.pretrain_log and not args.pretrained:
        parser.error("--pretrain-log needs --pretrained (the folder that pretrain made)")
    if args.pretrained:
        shared = Path(args.pretrained)
        if args.pretrain_log:
            results["pretrain"] = parse_pretrain(Path(args.pretrain_log).read_text(), args.preset)
            results["pretrain"]["log"] = Path(args.pretrain_log).name
        else:
            results["recorded_training"] = recorded_training(shared, env)
    else:
        shared = work / "pretrained"
        print(f"pretrain into {shared} ...", flush=True)
        results["pretrain"] = run_pretrain(args.preset, shared, env)
        print(f"pretrain: {results['pretrain']['wall_seconds']:.0f} s", flush=True)
        make_read_only(shared)
        save("pretrain")
    env["OOD_PRETRAINED_DIR"] = str(shared)
    before = fingerprint_folder(shared)

    if not args.no_serial:
        print("one kernel ...", flush=True)
        results["serial"] = run_series(notebooks, work / "serial", env, args.timeout)
        print(f"one kernel: {results['serial']['wall_seconds']:.0f} s", flush=True)
        save("one kernel")
    runs = []
    if args.kernels > 0:
        print(f"{args.kernels} kernels at once ...", flush=True)
        slots = [None] * args.kernels

        def one(index):
            slots[index] = run_series(notebooks, work / f"kernel{index + 1}", env, args.timeout)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.kernels)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runs = slots
        results["concurrent"] = {"kernels": args.kernels, "wall_seconds": round(time.perf_counter() - start, 1),
                                 "runs": runs}
        print(f"{args.kernels} kernels: {results['concurrent']['wall_seconds']:.0f} s", flush=True)

    after = fingerprint_folder(shared)
    loads = check_detectors(shared, env)
    every = ([results["serial"]] if "serial" in results else []) + runs
    rows = [row for run in every for row in run["rows"]]
    results["checks"] = {
        "every notebook finished": all(row["ok"] for row in rows),
        # the notebooks load quietly (no "loaded ..." line): a detector they trained would be saved in
        # the per-user artifacts folder, so an empty one is the evidence that all came from the shared one
        "every detector was loaded from the shared folder (none trained or saved, no fallback)":
            all(row.get("trained", 1) == 0 and not row.get("fallback") for row in rows if row["ok"])
            and all(not run["artifacts_written"] for run in every),
        "shared folder unchanged (every entry: mode, mtime, size, SHA-256)": before == after,
        "every detector file in the shared folder still loads": bool(loads) and all(v == "ok" for v in loads.values()),
        "nothing written to the per-user artifacts folders": all(not run["artifacts_written"] for run in every),
    }
    results["detector_files"] = loads
    save("checks")
    print(markdown(results))
    if not args.work:
        for path in [*work.rglob("*"), work]:  # give write bits back so the scratch folder can go
            if not path.is_symlink():
                path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(results["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
