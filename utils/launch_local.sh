#!/usr/bin/env bash
# Run a command as N parallel local jobs (the local counterpart of launch_slurm.sh).
#
#   utils/launch_local.sh [--max-jobs-run N] [--config FILE] [--<resource> VALUE ...] \
#       JOB=1:N LOGDIR/name.JOB.log command args-with-JOB...
#   utils/launch_local.sh LOGDIR/name.log command args...        (one job, nothing substituted)
#
# JOB is replaced by the job number in the log name and in every argument. At most
# --max-jobs-run jobs (default: the number of CPUs) run at once. Each job's log holds its
# command line, start and end times, stdout+stderr and exit code (utils/run_job.sh).
# Exit status 0 when every job succeeded; otherwise 1, after printing, for each failed job, the
# tail of its log and the exact command that reruns only that job.
# --config and resource options (--mem, --gpu, ...) are accepted for interface compatibility
# with launch_slurm.sh and ignored. Commands run as argument vectors (no shell re-parsing):
# wrap pipelines in `bash -c '...'` yourself.
set -euo pipefail

ll_launcher=launch_local.sh
utils_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ll_launcher_path="${utils_dir}/launch_local.sh"
# shellcheck source=utils/launch_lib.sh
. "${utils_dir}/launch_lib.sh"

ll_parse "$@"
max_jobs=${ll_max_jobs_run:-$(nproc)}
pids=()

stop_jobs() {
    local pid
    for pid in "${pids[@]+"${pids[@]}"}"; do
        kill -TERM "${pid}" 2>/dev/null || true
    done
}
trap 'stop_jobs; wait; exit 130' INT TERM

# Number of our jobs still running.
running() {
    local pid count=0
    for pid in "${pids[@]+"${pids[@]}"}"; do
        if kill -0 "${pid}" 2>/dev/null; then count=$((count + 1)); fi
    done
    echo "${count}"
}

for ((n = ll_first; n <= ll_last; n++)); do
    while [ "$(running)" -ge "${max_jobs}" ]; do
        wait -n || true
    done
    args=()
    for a in "${ll_cmd[@]}"; do
        args+=("$(ll_subst "${a}" "${n}")")
    done
    "${utils_dir}/run_job.sh" "$(ll_log_of "${n}")" "${args[@]}" &
    pids+=("$!")
done
wait || true
ll_report
