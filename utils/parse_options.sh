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
#
# Every variable of this file starts with `_po_` (functions' locals too): an option is set with
# `printf -v NAME`, which would write a local of the same name instead of the script's variable,
# and option names start with a letter, so no option can be shadowed.

_po_script="${BASH_SOURCE[1]:-$0}"
_po_prog="$(basename -- "${_po_script}")"

# Print "name<TAB>comment" for every default line of the sourcing script, in order.
_po_default_lines() {
    local _po_line _po_name _po_comment
    [ -r "${_po_script}" ] || return 0
    while IFS= read -r _po_line || [ -n "${_po_line}" ]; do
        case "${_po_line}" in
            *parse_options.sh*) [[ "${_po_line}" =~ ^[[:space:]]*(\.|source)[[:space:]] ]] && break ;;
        esac
        if [[ "${_po_line}" =~ ^([a-z][a-z0-9_]*)= ]]; then
            _po_name="${BASH_REMATCH[1]}"
            [ "${_po_name}" = help_message ] && continue
            _po_comment=""
            if [[ "${_po_line}" =~ [[:space:]]#[[:space:]]?(.*)$ ]]; then
                _po_comment="${BASH_REMATCH[1]}"
            fi
            printf '%s\t%s\n' "${_po_name}" "${_po_comment}"
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
    local _po_name="$1"
    [[ "${_po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || return 1
    if [ -r "${_po_script}" ]; then
        [[ "${_po_known_names}" == *" ${_po_name} "* ]] || return 1
        return 0
    fi
    [[ "${_po_name}" =~ ^[a-z][a-z0-9_]*$ ]] && [ -n "${!_po_name+set}" ]
}

# Set NAME to VALUE after checking it is known and respects a boolean default.
# WHERE says where the setting came from, for error messages.
_po_set() {
    local _po_name="$1" _po_value="$2" _po_where="$3"
    _po_is_known "${_po_name}" || _po_die "${_po_where}: unknown option '${_po_name}' (see --help)"
    case "${!_po_name-}" in
        true|false)
            case "${_po_value}" in
                true|false) ;;
                *) _po_die "${_po_where}: option '${_po_name}' takes true or false, got '${_po_value}'" ;;
            esac ;;
    esac
    printf -v "${_po_name}" '%s' "${_po_value}"
}

# Apply a config file of NAME=VALUE lines, rejecting anything else.
_po_apply_config() {
    local _po_file="$1" _po_line _po_lineno=0 _po_name _po_raw _po_value
    local _po_plain='[^][:space:]"'"'"'`$;&|<>()\\]*'
    local _po_squoted="'[^']*'"
    local _po_dquoted='"[^"`$\\]*"'
    local _po_re="^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(${_po_plain}|${_po_squoted}|${_po_dquoted})[[:space:]]*(#.*)?$"
    [ -f "${_po_file}" ] || _po_die "--config: no such file '${_po_file}'"
    while IFS= read -r _po_line || [ -n "${_po_line}" ]; do
        _po_lineno=$((_po_lineno + 1))
        [[ "${_po_line}" =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if ! [[ "${_po_line}" =~ ${_po_re} ]]; then
            _po_die "${_po_file} line ${_po_lineno}: expected NAME=VALUE (value plain or quoted, no commands or expansions), got: ${_po_line}"
        fi
        _po_name="${BASH_REMATCH[1]}"
        _po_raw="${BASH_REMATCH[2]}"
        case "${_po_raw}" in
            \'*|\"*) _po_value="${_po_raw:1:${#_po_raw}-2}" ;;
            *) _po_value="${_po_raw}" ;;
        esac
        _po_set "${_po_name}" "${_po_value}" "${_po_file} line ${_po_lineno}"
    done < "${_po_file}"
}

# One aligned help line: name, value, comment (no trailing blanks).
_po_help_line() {
    local _po_text
    printf -v _po_text '  --%-22s %-24s %s' "$1" "$2" "${3:+# $3}"
    printf '%s\n' "${_po_text%"${_po_text##*[![:space:]]}"}"
}

# Print the help text and every option with its current value.
_po_print_help() {
    local _po_name _po_comment _po_value
    [ -n "${help_message:-}" ] && printf '%s\n' "${help_message}"
    echo
    echo "Options (current values; --name value or --name=value; dashes or underscores):"
    while IFS=$'\t' read -r _po_name _po_comment; do
        _po_value="${!_po_name-}"
        _po_help_line "${_po_name}" "\"${_po_value}\"" "${_po_comment}"
    done < <(_po_default_lines)
    _po_help_line config FILE "read NAME=VALUE lines from FILE first"
    _po_help_line help "" "print this help and exit"
}

# Scan the options; record them in _po_names/_po_values/_po_configs and how many arguments to
# drop in _po_nshift.
_po_scan() {
    local _po_opt _po_name _po_value
    _po_names=(); _po_values=(); _po_configs=(); _po_help=false; _po_nshift=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --) _po_nshift=$((_po_nshift + 1)); break ;;
            -h|--help) _po_help=true; _po_nshift=$((_po_nshift + 1)); shift; continue ;;
            --*=*) _po_opt="${1%%=*}"; _po_value="${1#*=}"; shift; _po_nshift=$((_po_nshift + 1)) ;;
            --?*)
                _po_opt="$1"
                [ $# -ge 2 ] || _po_die "option '${_po_opt}' needs a value"
                _po_value="$2"; shift 2; _po_nshift=$((_po_nshift + 2)) ;;
            *) break ;;
        esac
        _po_name="${_po_opt#--}"
        _po_name="${_po_name//-/_}"
        if [ "${_po_name}" = config ]; then
            _po_configs+=("${_po_value}")
        else
            _po_names+=("${_po_name}"); _po_values+=("${_po_value}")
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
