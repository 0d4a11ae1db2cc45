# shellcheck shell=bash
# Command-line options for recipe scripts, with Kaldi semantics.
#
# Source this file AFTER setting the defaults (one `name=value  # comment` line each, at the
# start of a line) and `help_message`:
#
#     stage=0        # first stage to run
#     use_gpu=false  # true or false
#     help_message="Usage: $0 [options] <arg>"
#     . utils/parse_options.sh
#
# Then:
#   --foo-bar VALUE  or  --foo_bar VALUE  or  --foo-bar=VALUE   sets foo_bar=VALUE
#   --config FILE    reads NAME=VALUE lines from FILE (comments and blank lines allowed; values
#                    may be 'single' or "double" quoted; nothing else, in particular no commands,
#                    is accepted). Config files are applied first, so the command line wins
#                    whatever the order.
#   --help, -h       prints $help_message and every option with its current value and comment,
#                    then exits 0.
#   --               ends the options.
# Errors (exit 1, message on stderr): an option with no default line in the script (unknown),
# an option without a value, a value other than true/false for an option whose default is true
# or false, a config file that is missing or holds a line that is not NAME=VALUE.
# Parsing stops at the first argument that is not an option: the rest stays in "$@".
#
# An option is "known" when the sourcing script assigns it on a line of its own before sourcing
# this file (the lines --help lists); if the script's text cannot be read, any variable that is
# already set and lower-case counts, as in Kaldi.

_po_script="${BASH_SOURCE[1]:-$0}"
_po_prog="$(basename -- "${_po_script}")"

# Print "name<TAB>comment" for every default line of the sourcing script, in order.
_po_default_lines() {
    local line name comment
    [ -r "${_po_script}" ] || return 0
    while IFS= read -r line || [ -n "${line}" ]; do
        case "${line}" in
            *parse_options.sh*) [[ "${line}" =~ ^[[:space:]]*(\.|source)[[:space:]] ]] && break ;;
        esac
        if [[ "${line}" =~ ^([a-z][a-z0-9_]*)= ]]; then
            name="${BASH_REMATCH[1]}"
            [ "${name}" = help_message ] && continue
            comment=""
            if [[ "${line}" =~ [[:space:]]#[[:space:]]?(.*)$ ]]; then
                comment="${BASH_REMATCH[1]}"
            fi
            printf '%s\t%s\n' "${name}" "${comment}"
        fi
    done < "${_po_script}"
}

_po_known_names=" $(_po_default_lines | cut -f1 | tr '\n' ' ')"

_po_die() {
    echo "${_po_prog}: $*" >&2
    exit 1
}

# True when NAME may be set as an option.
_po_is_known() {
    local name="$1"
    [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 1
    if [ -r "${_po_script}" ]; then
        [[ "${_po_known_names}" == *" ${name} "* ]] || return 1
        return 0
    fi
    [[ "${name}" =~ ^[a-z][a-z0-9_]*$ ]] && [ -n "${!name+set}" ]
}

# Set NAME to VALUE after checking it is known and respects a boolean default.
# WHERE says where the setting came from, for error messages.
_po_set() {
    local name="$1" value="$2" where="$3"
    _po_is_known "${name}" || _po_die "${where}: unknown option '${name}' (see --help)"
    case "${!name-}" in
        true|false)
            case "${value}" in
                true|false) ;;
                *) _po_die "${where}: option '${name}' takes true or false, got '${value}'" ;;
            esac ;;
    esac
    printf -v "${name}" '%s' "${value}"
}

# Apply a config file of NAME=VALUE lines, rejecting anything else.
_po_apply_config() {
    local file="$1" line lineno=0 name raw value
    local plain='[^][:space:]"'"'"'`$;&|<>()\\]*'
    local squoted="'[^']*'"
    local dquoted='"[^"`$\\]*"'
    local re="^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(${plain}|${squoted}|${dquoted})[[:space:]]*(#.*)?$"
    [ -f "${file}" ] || _po_die "--config: no such file '${file}'"
    while IFS= read -r line || [ -n "${line}" ]; do
        lineno=$((lineno + 1))
        [[ "${line}" =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if ! [[ "${line}" =~ ${re} ]]; then
            _po_die "${file} line ${lineno}: expected NAME=VALUE (value plain or quoted, no commands or expansions), got: ${line}"
        fi
        name="${BASH_REMATCH[1]}"
        raw="${BASH_REMATCH[2]}"
        case "${raw}" in
            \'*|\"*) value="${raw:1:${#raw}-2}" ;;
            *) value="${raw}" ;;
        esac
        _po_set "${name}" "${value}" "${file} line ${lineno}"
    done < "${file}"
}

# One aligned help line: name, value, comment (no trailing blanks).
_po_help_line() {
    local text
    printf -v text '  --%-22s %-24s %s' "$1" "$2" "${3:+# $3}"
    printf '%s\n' "${text%"${text##*[![:space:]]}"}"
}

# Print the help text and every option with its current value.
_po_print_help() {
    local name comment value
    [ -n "${help_message:-}" ] && printf '%s\n' "${help_message}"
    echo
    echo "Options (current values; --name value or --name=value; dashes or underscores):"
    while IFS=$'\t' read -r name comment; do
        value="${!name-}"
        _po_help_line "${name}" "\"${value}\"" "${comment}"
    done < <(_po_default_lines)
    _po_help_line config FILE "read NAME=VALUE lines from FILE first"
    _po_help_line help "" "print this help and exit"
}

# Scan the options; record them in _po_names/_po_values/_po_configs and how many arguments to
# drop in _po_nshift.
_po_scan() {
    local opt name value
    _po_names=(); _po_values=(); _po_configs=(); _po_help=false; _po_nshift=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --) _po_nshift=$((_po_nshift + 1)); break ;;
            -h|--help) _po_help=true; _po_nshift=$((_po_nshift + 1)); shift; continue ;;
            --*=*) opt="${1%%=*}"; value="${1#*=}"; shift; _po_nshift=$((_po_nshift + 1)) ;;
            --?*)
                opt="$1"
                [ $# -ge 2 ] || _po_die "option '${opt}' needs a value"
                value="$2"; shift 2; _po_nshift=$((_po_nshift + 2)) ;;
            *) break ;;
        esac
        name="${opt#--}"
        name="${name//-/_}"
        if [ "${name}" = config ]; then
            _po_configs+=("${value}")
        else
            _po_names+=("${name}"); _po_values+=("${value}")
        fi
    done
}

_po_scan "$@"
shift "${_po_nshift}"
for _po_i in "${_po_configs[@]+"${_po_configs[@]}"}"; do
    _po_apply_config "${_po_i}"
done
for _po_i in "${!_po_names[@]}"; do
    _po_set "${_po_names[_po_i]}" "${_po_values[_po_i]}" "command line"
done
if ${_po_help}; then
    _po_print_help
    exit 0
fi
unset _po_i _po_names _po_values _po_configs _po_help _po_nshift
true
