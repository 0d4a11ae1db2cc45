#!/usr/bin/env bash
# Run a command as a Slurm job array (same interface as launch_local.sh).
#
#   utils/launch_slurm.sh [--max-jobs-run N] [--config conf/slurm.conf] [--dry-run true] \
#       [--mem 8G] [--gpu 1] [--num-threads 4] [--time 4:00:00] ... \
#       JOB=1:N LOGDIR/name.JOB.log command args-with-JOB...
#   utils/launch_slurm.sh LOGDIR/name.log command args...     (one job: --array=1-1)
#
# Writes LOGDIR/q/name.sh with "#SBATCH --array=A-B%max" and one "#SBATCH" line per resource
# option, whose body runs utils/run_job.sh with JOB replaced by ${SLURM_ARRAY_TASK_ID}; submits it
# with `sbatch --wait`; then reads every job's log and, for each failed job, prints the log tail
# and the command that reruns only that job. Exit status 1 if any job failed.
# --dry-run true (or USAD2_SLURM_DRY_RUN=1) only writes the script and prints its path.
#
# Config file format (one directive per line, '#' starts a comment line):
#   command sbatch --export=ALL    the submit command and options every array gets
#   option NAME=* SBATCH-ARGS      --NAME VALUE adds "#SBATCH SBATCH-ARGS" with $0 -> VALUE
#   option NAME=VALUE [SBATCH-ARGS] an exact value; wins over NAME=*; may add nothing
#   default NAME=VALUE             the value of --NAME when it is not given
# NAME uses underscores (--num-threads matches num_threads). A resource option with no matching
# line is an error. Without --config, the built-in configuration below is used.
set -euo pipefail

ll_launcher=launch_slurm.sh
utils_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ll_launcher_path="${utils_dir}/launch_slurm.sh"
# shellcheck source=utils/launch_lib.sh
. "${utils_dir}/launch_lib.sh"

# shellcheck disable=SC2016  # $0 is the config's placeholder, not an expansion
builtin_conf='command sbatch --export=ALL
option mem=* --mem=$0
option gpu=0
option gpu=* --gres=gpu:$0
option num_threads=* --cpus-per-task=$0
option time=* --time=$0
option partition=* --partition=$0
option account=* --account=$0'

# The configuration text: the --config file or the built-in one.
conf_text() {
    if [ -n "${ll_config}" ]; then
        [ -f "${ll_config}" ] || ll_die "--config: no such file '${ll_config}'"
        cat -- "${ll_config}"
    else
        printf '%s\n' "${builtin_conf}"
    fi
}

# Read the configuration into submit_cmd, rules (NAME=PATTERN -> args) and defaults.
read_conf() {
    local line lineno=0 kind key rest where
    submit_cmd=(sbatch); declare -gA rules=() defaults=()
    while IFS= read -r line || [ -n "${line}" ]; do
        lineno=$((lineno + 1))
        [[ "${line}" =~ ^[[:space:]]*(#.*)?$ ]] && continue
        where="${ll_config:-built-in config} line ${lineno}"
        read -r kind key rest <<< "${line}"
        case "${kind}" in
            command) read -ra submit_cmd <<< "${key} ${rest}" ;;
            option|default)
                [[ "${key}" =~ ^[a-z_][a-z0-9_]*=[^[:space:]]+$ ]] \
                    || ll_die "${where}: expected '${kind} NAME=VALUE ...', got: ${line}"
                if [ "${kind}" = option ]; then rules["${key}"]="${rest}"
                else
                    [ -z "${rest}" ] || ll_die "${where}: 'default' takes only NAME=VALUE, got: ${line}"
                    defaults["${key%%=*}"]="${key#*=}"
                fi ;;
            *) ll_die "${where}: unknown directive '${kind}' (command, option or default)" ;;
        esac
    done < <(conf_text)
}

# Print the sbatch arguments for resource NAME=VALUE (empty output: nothing to add).
map_option() {
    local name="$1" value="$2"
    if [ -n "${rules["${name}=${value}"]+set}" ]; then
        printf '%s' "${rules["${name}=${value}"]}"
    elif [ -n "${rules["${name}=*"]+set}" ]; then
        printf '%s' "${rules["${name}=*"]//\$0/${value}}"
    else
        ll_die "${ll_config:-built-in config}: no 'option ${name}=...' line for --${name//_/-}"
    fi
}

# Print the #SBATCH lines of the resource options (given ones, then unused defaults).
sbatch_resource_lines() {
    local i name mapped
    declare -A given=()
    for i in "${!ll_opt_names[@]}"; do
        name="${ll_opt_names[i]}"
        given["${name}"]=1
        mapped=$(map_option "${name}" "${ll_opt_values[i]}") || exit 1
        [ -z "${mapped}" ] || printf '#SBATCH %s\n' "${mapped}"
    done
    for name in "${!defaults[@]}"; do
        [ -z "${given["${name}"]+set}" ] || continue
        mapped=$(map_option "${name}" "${defaults["${name}"]}") || exit 1
        [ -z "${mapped}" ] || printf '#SBATCH %s\n' "${mapped}"
    done | sort
    return "${PIPESTATUS[0]}"
}

# Print WORD shell-quoted with the job variable turned into ${SLURM_ARRAY_TASK_ID}.
quote_with_task_id() {
    local word="$1" out="" piece
    if [ -z "${ll_var}" ]; then printf '%q' "${word}"; return; fi
    while [[ "${word}" == *"${ll_var}"* ]]; do
        piece="${word%%"${ll_var}"*}"
        [ -z "${piece}" ] || out+=$(printf '%q' "${piece}")
        # shellcheck disable=SC2016  # expanded by the job, not here
        out+='"${SLURM_ARRAY_TASK_ID}"'
        word="${word#*"${ll_var}"}"
    done
    [ -z "${word}" ] || out+=$(printf '%q' "${word}")
    printf '%s' "${out}"
}

# Write the sbatch script to $1.
write_script() {
    local script="$1" qdir name array a
    qdir=$(dirname -- "${script}")
    name=$(basename -- "${script}" .sh)
    array="${ll_first}-${ll_last}"
    [ -z "${ll_max_jobs_run}" ] || array+="%${ll_max_jobs_run}"
    {
        echo '#!/usr/bin/env bash'
        echo "# Written by utils/launch_slurm.sh; submit with: sbatch --wait $(printf '%q' "${script}")"
        echo "#SBATCH --job-name=${name}"
        echo "#SBATCH --array=${array}"
        echo "#SBATCH --output=${qdir}/${name}.%a.out"
        printf '%s' "${resource_lines}"
        printf 'cd %q || exit 1\n' "$(pwd)"
        printf 'exec %q %s' "${utils_dir}/run_job.sh" "$(quote_with_task_id "${ll_log}")"
        for a in "${ll_cmd[@]}"; do
            printf ' %s' "$(quote_with_task_id "${a}")"
        done
        printf '\n'
    } > "${script}.tmp"
    chmod +x "${script}.tmp"
    mv -f -- "${script}.tmp" "${script}"
}

ll_parse "$@"
read_conf
resource_lines=$(sbatch_resource_lines)
[ -z "${resource_lines}" ] || resource_lines+=$'\n'
name=$(basename -- "${ll_log}")
name="${name%.log}"
if [ -n "${ll_var}" ]; then
    name="${name//."${ll_var}"/}"
    name="${name//"${ll_var}"/}"
fi
qdir="$(dirname -- "${ll_log}")/q"
mkdir -p -- "${qdir}"
script="${qdir}/${name}.sh"
write_script "${script}"

if [ "${ll_dry_run}" = true ] || [ "${USAD2_SLURM_DRY_RUN:-0}" = 1 ]; then
    echo "${script}"
    exit 0
fi
# Logs from an earlier submission must not be mistaken for this one's results.
for ((n = ll_first; n <= ll_last; n++)); do rm -f -- "$(ll_log_of "${n}")"; done
"${submit_cmd[@]}" --wait "${script}" || true
ll_report
