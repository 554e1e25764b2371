#!/bin/bash
# An activation experiment over a Slurm job array: 8 tasks share the runs of one
# experiment folder on a shared filesystem, and a dependent step writes the final report.
#
#   sbatch examples/slurm_compare.sh
#
# Each task reads its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (compare says
# which shard it took). A task that dies leaves its run's lock behind; the run is taken
# over and resumed from its checkpoint by the next compare on the same --out (re-submit the
# array, or run one compare by hand) once the lock's heartbeat is older than
# --claim-timeout.
#SBATCH --job-name=actyolo-compare
#SBATCH --array=1-8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/compare-%A-%a.out

set -euo pipefail

OUT=${OUT:-$HOME/experiments/acts-coco}
COMMON=(--cfg yolov5n.yaml --data data/coco.yaml --imgsz 640 --epochs 100 --optimizer SGD
        --acts "silu,relu,nn.LeakyReLU(0.1),hardswish,mish,frelu" --seeds 0,1,2 --out "$OUT")

if [ -z "${ACTYOLO_REPORT_STEP:-}" ]; then
    # The report step runs once every array task has ended, whatever their exit status.
    if [ "${SLURM_ARRAY_TASK_ID}" = "${SLURM_ARRAY_TASK_MIN:-1}" ]; then
        sbatch --dependency="afterany:${SLURM_ARRAY_JOB_ID}" --array=0 \
            --export=ALL,ACTYOLO_REPORT_STEP=1 --cpus-per-task=2 --time=00:30:00 "$0"
    fi
    srun actyolo compare "${COMMON[@]}"
else
    actyolo compare "${COMMON[@]}" --report-only
    actyolo compare --status "$OUT"
fi
