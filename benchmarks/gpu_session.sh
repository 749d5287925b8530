#!/usr/bin/env bash
# The one command a session with a borrowed GPU runs first (issue 16): float32 eager and the default run
# options (bf16, compile) side by side, the paper preset for as many epochs as fit, then full-schedule runs
# of the classroom preset while time is left. About 9 minutes; everything it measures lands in $OUT.
#
# 1. Here, on a machine with the data (about 21 MB: MNIST and the CIFAR-10 test JPEGs, git-ignored):
#        OOD_DATA_DIR=/path/to/data benchmarks/gpu_session.sh pack        (or: make gpu-session-pack)
# 2. On the GPU machine (the device tool: carry ["runs/gpu-data"], timeout_s 600):
#        bash benchmarks/gpu_session.sh run
#    $OUT receives paper/results.json, paper/results.md, paper/log.txt, session.log and one
#    results.json per classroom run (at most 8 files, as the device tool brings back).
# GPU_SECONDS (default 540) bounds the whole run; PYTHON (default python3) is the interpreter
# holding torch, scikit-learn, matplotlib and tqdm.
set -uo pipefail

mode=${1:-run}
case "$mode" in
pack)
    src=${OOD_DATA_DIR:?set OOD_DATA_DIR to the folder that holds MNIST/raw and cifar10-jpg}
    mkdir -p runs/gpu-data
    tar -czf runs/gpu-data/data.tar.gz -C "$src" MNIST/raw cifar10-jpg/test
    ls -l runs/gpu-data/data.tar.gz
    ;;
run)
    start=$SECONDS
    total=${GPU_SECONDS:-540}
    out=${OUT:-runs/gpu-session}
    py=${PYTHON:-python3}
    mkdir -p "$out" /tmp/ood-data /tmp/ood-runs
    log="$out/session.log"
    tar -xzf runs/gpu-data/data.tar.gz -C /tmp/ood-data || { echo "no runs/gpu-data/data.tar.gz: run 'pack' first" | tee -a "$log"; exit 2; }
    export OOD_DATA_DIR=/tmp/ood-data PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
        "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
        git log -1 --format='commit %H %s' 2>/dev/null
    } >>"$log" 2>&1
    # 1. old and new path side by side, probe and main fit of the paper preset (MNIST in, CIFAR-10 out)
    timeout 330 "$py" benchmarks/paper_preset.py --setting mnist-cifar10 --budget-seconds 240 \
        --out "$out/paper" >>"$log" 2>&1
    echo "paper_preset.py exit $? after $((SECONDS - start)) s" >>"$log"
    # 2. full schedules of the classroom preset (5 + 3 epochs, the notebooks' default) with the default run options
    for seed in 0 1 2; do
        left=$((total - (SECONDS - start)))
        if [ "$left" -lt 60 ]; then echo "stop: ${left} s left" >>"$log"; break; fi
        timeout "$left" "$py" -m ood_helpers reproduce --setting mnist-cifar10 --preset classroom --seed "$seed" \
            --out "/tmp/ood-runs/classroom-seed$seed" --no-progress >>"$log" 2>&1
        echo "classroom seed $seed exit $? after $((SECONDS - start)) s" >>"$log"
        cp "/tmp/ood-runs/classroom-seed$seed/results.json" "$out/classroom-seed$seed.json" 2>/dev/null
    done
    tail -n 40 "$log"
    ;;
*)
    echo "usage: $0 pack|run" >&2
    exit 2
    ;;
esac
