#!/usr/bin/env bash
# Set up everything usad2 needs on a fresh Debian machine: apt packages, then the virtual
# environment tools/venv with the pinned stack and usad2 installed in editable mode.
# Idempotent: each step is skipped when its stamp matches the input it was made from.
#   tools/setup.sh [--no-apt]      (--no-apt: skip the apt step, e.g. without root)
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
do_apt=true
[ "${1:-}" = "--no-apt" ] && do_apt=false

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (setup.sh) $*" >&2; }
stamp_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

if ${do_apt}; then
    apt_stamp="${tools_dir}/.apt.done"
    want=$(stamp_of "${tools_dir}/apt-packages.txt")
    if [ -f "${apt_stamp}" ] && [ "$(cat "${apt_stamp}")" = "${want}" ]; then
        log "apt packages: up to date"
    else
        mapfile -t pkgs < <(grep -v '^#' "${tools_dir}/apt-packages.txt" | grep -v '^$')
        missing=()
        for p in "${pkgs[@]}"; do
            dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
            log "apt: installing ${missing[*]}"
            sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
            ${sudo_cmd} apt-get update -qq
            DEBIAN_FRONTEND=noninteractive ${sudo_cmd} apt-get install -y -qq --no-install-recommends "${missing[@]}"
        fi
        echo "${want}" > "${apt_stamp}"
        log "apt packages: done"
    fi
fi

if [ ! -x "${venv}/bin/python" ]; then
    log "creating ${venv} with ${python}"
    "${python}" -m venv "${venv}"
fi
pip_stamp="${venv}/.usad2-pip.done"
want=$(stamp_of "${tools_dir}/requirements.txt" "${tools_dir}/requirements-nodeps.txt" "${repo_dir}/setup.py")
if [ -f "${pip_stamp}" ] && [ "$(cat "${pip_stamp}")" = "${want}" ]; then
    log "python packages: up to date"
else
    log "pip: installing the pinned stack (the torch 2.8.0 wheel is large: a few minutes)"
    "${venv}/bin/python" -m pip install -q --upgrade pip
    "${venv}/bin/python" -m pip install -q -r "${tools_dir}/requirements.txt"
    # HEAR validator and X-ARES: pure-Python clients installed without their declared deps
    "${venv}/bin/python" -m pip install -q --no-deps --ignore-requires-python -r "${tools_dir}/requirements-nodeps.txt"
    "${venv}/bin/python" -m pip install -q --no-deps --no-build-isolation -e "${repo_dir}"
    echo "${want}" > "${pip_stamp}"
    log "python packages: done"
fi
# s3prl `-u usad2` start-up hook (usad2_s3prl.pth): setup.py puts it into wheels, but
# setuptools' editable installs may not carry it, so always (re)write it; idempotent
"${venv}/bin/python" -m usad2.bin.s3prl_runner --install-hook
"${venv}/bin/python" -m usad2.bin.check_install
