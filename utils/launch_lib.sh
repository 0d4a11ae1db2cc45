# shellcheck shell=bash disable=SC2034,SC2154
# Shared code of the job launchers (sourced by launch_local.sh and launch_slurm.sh): the one
# command-line interface, JOB substitution, and the failure report.
#
#   <launcher> [--max-jobs-run N] [--config FILE] [--<generic> VALUE ...] [VAR=A:B | VAR=A] LOG cmd args...
#
# VAR (usually JOB) is replaced, as a plain substring, in LOG and in every argument by the job
# number A..B. Without VAR=..., one job runs (number 1) and nothing is substituted.
# Generic options (--mem 8G, --gpu 1, --num-threads 4, --time 2:00:00, ...) describe resources:
# launch_slurm.sh maps them through its config file; launch_local.sh accepts and ignores them,
# so that a recipe can switch launcher without changing its command lines.
# After ll_parse: ll_launcher, ll_max_jobs_run, ll_config, ll_dry_run, ll_opt_names/values,
# ll_var, ll_first, ll_last, ll_log, ll_cmd (array), ll_orig_args (generic + config, for reruns).

ll_die() {
    echo "${ll_launcher}: $*" >&2
    exit 1
}

ll_usage() {
    echo "usage: ${ll_launcher} [--max-jobs-run N] [--config FILE] [--<resource> VALUE ...] [JOB=1:N] LOG command [args...]" >&2
    exit 1
}

# Parse the launcher's arguments into the ll_* variables.
ll_parse() {
    local name
    ll_max_jobs_run=""; ll_config=""; ll_dry_run=false
    ll_opt_names=(); ll_opt_values=(); ll_orig_args=()
    ll_var=""; ll_first=1; ll_last=1
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help)
                # The launcher's header comment is its documentation.
                sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${ll_launcher_path}"
                exit 0 ;;
            --*)
                [ $# -ge 2 ] || ll_die "option '$1' needs a value"
                name="${1#--}"; name="${name//-/_}"
                case "${name}" in
                    max_jobs_run)
                        [[ "$2" =~ ^[1-9][0-9]*$ ]] || ll_die "--max-jobs-run needs a positive integer, got '$2'"
                        ll_max_jobs_run="$2" ;;
                    config) ll_config="$2"; ll_orig_args+=("$1" "$2") ;;
                    dry_run)
                        case "$2" in true|false) ll_dry_run="$2" ;;
                            *) ll_die "--dry-run takes true or false, got '$2'" ;; esac ;;
                    *) ll_opt_names+=("${name}"); ll_opt_values+=("$2"); ll_orig_args+=("$1" "$2") ;;
                esac
                shift 2 ;;
            *) break ;;
        esac
    done
    if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)(:([0-9]+))?$ ]]; then
        ll_var="${BASH_REMATCH[1]}"
        ll_first="${BASH_REMATCH[2]}"
        ll_last="${BASH_REMATCH[4]:-${BASH_REMATCH[2]}}"
        ll_first=$((10#${ll_first})); ll_last=$((10#${ll_last}))
        [ "${ll_first}" -le "${ll_last}" ] || ll_die "empty job range '$1'"
        shift
    fi
    [ $# -ge 2 ] || ll_usage
    ll_log="$1"
    shift
    ll_cmd=("$@")
}

# Print STRING with the job variable replaced by N (unchanged when there is no job variable).
ll_subst() {
    local s="$1" n="$2"
    if [ -n "${ll_var}" ]; then
        printf '%s' "${s//"${ll_var}"/${n}}"
    else
        printf '%s' "${s}"
    fi
}

# The log file of job N.
ll_log_of() {
    ll_subst "${ll_log}" "$1"
}

# The exit code recorded at the end of LOG, or nothing when the job did not finish.
ll_exit_code_of() {
    local log="$1"
    [ -f "${log}" ] || return 0
    sed -n 's/^# ended: .*, exit code \([0-9][0-9]*\), elapsed .*/\1/p' "${log}" | tail -n 1
}

# The shell command (pasteable) that reruns only job N through the same launcher.
ll_rerun_command() {
    local n="$1" spec=""
    [ -n "${ll_var}" ] && spec="${ll_var}=${n}:${n}"
    printf 'cd %q &&' "$(pwd)"
    printf ' %q' "${ll_launcher_path}" "${ll_orig_args[@]+"${ll_orig_args[@]}"}"
    [ -n "${spec}" ] && printf ' %q' "${spec}"
    printf ' %q' "${ll_log}" "${ll_cmd[@]}"
    printf '\n'
}

# Report every failed job (tail of its log and its rerun command) on stderr; return 1 if any.
ll_report() {
    local n log rc failed=0 total=$((ll_last - ll_first + 1))
    for ((n = ll_first; n <= ll_last; n++)); do
        log=$(ll_log_of "${n}")
        rc=$(ll_exit_code_of "${log}")
        [ "${rc}" = 0 ] && continue
        failed=$((failed + 1))
        {
            if [ -z "${rc}" ]; then
                echo "${ll_launcher}: job ${n} did not finish (no exit code in ${log}; killed?)"
            else
                echo "${ll_launcher}: job ${n} failed with exit code ${rc}; last lines of ${log}:"
            fi
            if [ -f "${log}" ]; then tail -n "${LAUNCH_TAIL_LINES:-20}" -- "${log}" | sed 's/^/    /'; fi
            echo "  rerun only this job with:"
            echo "    $(ll_rerun_command "${n}")"
        } >&2
    done
    if [ "${failed}" -gt 0 ]; then
        echo "${ll_launcher}: ${failed} of ${total} jobs failed (logs: $(ll_subst "${ll_log}" '*'))" >&2
        return 1
    fi
    return 0
}
