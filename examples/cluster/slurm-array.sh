#!/usr/bin/env bash
# slurm-array.sh — a crucible merge as a Slurm job array: one array task per
# part, then `crucible assemble` as a job that starts when every task has
# succeeded (spec/parts.md). OUT must be on a file system every node mounts.
#
#   compile once (anywhere):  crucible compile recipe.yml -o merge.crb --models-dir /shared/models
#   size the array:           crucible plan merge.crb --part 1/8
#   submit:                   PARTS=8 ./slurm-array.sh merge.crb /shared/out/my-merge
#
# Each task needs about the peak memory `plan --part` prints (pass it as
# --mem) and as many cores as --threads (default: all it is given). A task
# that fails (node lost, preempted) can simply be resubmitted: a part run
# again over its own leftovers completes, and keeps shards already written.
set -euo pipefail

CRB=${1:?usage: PARTS=N $0 MERGE.crb OUT_DIR}
OUT=${2:?usage: PARTS=N $0 MERGE.crb OUT_DIR}
PARTS=${PARTS:-4}
MODELS=${MODELS:-/shared/models}      # where the .crb's models are (--models-dir)
CRUCIBLE=${CRUCIBLE:-crucible}
CPUS=${CPUS:-8}
MEM=${MEM:-16G}                        # from `crucible plan $CRB --part 1/$PARTS`

array=$(sbatch --parsable \
    --job-name=crucible-parts --array=1-"$PARTS" \
    --cpus-per-task="$CPUS" --mem="$MEM" --requeue \
    --output="${OUT%/}.part-%a.log" \
    --wrap="$CRUCIBLE run '$CRB' '$OUT' --part \$SLURM_ARRAY_TASK_ID/$PARTS --models-dir '$MODELS' --threads $CPUS --quiet")

# afterok: only once every array task exited 0; assemble checks every
# part's manifest, shard sizes and hashes, and names what is missing
sbatch --parsable --job-name=crucible-assemble --dependency=afterok:"$array" \
    --cpus-per-task=1 --mem=1G --output="${OUT%/}.assemble.log" \
    --wrap="$CRUCIBLE assemble '$OUT' && $CRUCIBLE verify '$OUT'"

echo "submitted array $array ($PARTS parts) and its assemble job; output: $OUT"
