#!/usr/bin/env bash
# Stage 1 of egs/multidomain: generate the demo corpus (speech, music, general audio from
# Debian packages) and its Kaldi data dirs: <data_dir>/{train,dev,test} and per domain
# <data_dir>/{speech,music,audio}_{train,dev,test}, each with utt2domain and task labels.
# Called by usad2.sh as
#   local/data.sh --data_dir data --demo_size {tiny,default,large} [--seed 0] [--nj 2]
# All the work is `python -m usad2.bin.prepare_demo` (skipped when already done; resumes).
set -euo pipefail

data_dir=data           # where the audio, note tables and data dirs are written
demo_size=default       # demo corpus size: tiny, default or large
seed=0                  # random seed of the corpus (same seed, same corpus)
nj=2                    # parallel generation workers
force=false             # regenerate even when the corpus is up to date
help_message="Usage: $0 [--data_dir data] [--demo_size default] [--seed 0] [--nj 2]"
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh

"${USAD2_PYTHON:-python3}" -m usad2.bin.prepare_demo --out "${data_dir}" --size "${demo_size}" \
    --seed "${seed}" --nj "${nj}" --force "${force}"
