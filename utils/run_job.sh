#!/usr/bin/env bash
# Run ONE job command and record it in its log file; used by launch_local.sh and by the
# scripts launch_slurm.sh submits, so that every launcher writes the same log format.
#
#   utils/run_job.sh LOG command [args...]
#
# LOG gets, in order: "# command: ..." (shell-quoted, pasteable), "# cwd: ...", "# host: ...",
# "# started: <date> (epoch <seconds.nanoseconds>)", the command's stdout and stderr, then
# "# ended: <date> (epoch ...), exit code N, elapsed S s". The exit status is the command's.
# The command is executed as an argument vector, never re-parsed by a shell.
# TERM/INT/HUP are forwarded to the command, so that killing the launcher stops the job.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 LOG command [args...]" >&2
    exit 2
fi
log="$1"
shift

now() { date '+%Y-%m-%dT%H:%M:%S%z (epoch %s.%N)'; }

mkdir -p -- "$(dirname -- "${log}")" || exit 1
start=$(date +%s.%N)
{
    printf '# command:'
    printf ' %q' "$@"
    printf '\n# cwd: %s\n# host: %s\n# started: %s\n' "$(pwd)" "$(hostname)" "$(now)"
} > "${log}" || exit 1

"$@" >> "${log}" 2>&1 < /dev/null &
child=$!
trap 'kill -TERM "${child}" 2>/dev/null' TERM INT HUP
wait "${child}"
rc=$?
# A trapped signal interrupts `wait`; wait again until the command has really ended.
while kill -0 "${child}" 2>/dev/null; do
    wait "${child}"
    rc=$?
done
end=$(date +%s.%N)
elapsed=$(awk -v a="${start}" -v b="${end}" 'BEGIN { printf "%.3f", b - a }')
printf '# ended: %s, exit code %d, elapsed %s s\n' "$(now)" "${rc}" "${elapsed}" >> "${log}"
exit "${rc}"
