# shellcheck shell=bash
# The environment of a recipe; sourced by usad2.sh from the recipe directory (egs/<name>).
# Puts the repository's virtual environment (tools/venv) first on PATH and the repository on
# PYTHONPATH, so that `python -m usad2.bin.<verb>` resolves to this checkout. Every path is
# derived from this file's location (egs/<name>/path.sh -> repository = ../..): no machine paths.
USAD2_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export USAD2_ROOT
if [ -d "${USAD2_ROOT}/tools/venv/bin" ]; then
    export PATH="${USAD2_ROOT}/tools/venv/bin:${USAD2_ROOT}/utils:${PATH}"
else
    export PATH="${USAD2_ROOT}/utils:${PATH}"
fi
export PYTHONPATH="${USAD2_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONIOENCODING=UTF-8
# Corpus roots and other machine-specific settings belong in the git-ignored db.local.sh.
if [ -f db.local.sh ]; then
    # shellcheck source=/dev/null
    . ./db.local.sh
fi
