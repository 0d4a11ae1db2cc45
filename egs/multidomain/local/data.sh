#!/usr/bin/env bash
# Stage 1 of egs/multidomain: build the Kaldi data dirs (train, dev, test) of the demo corpus,
# each utterance with its domain (utt2domain) and probing labels. Called by usad2.sh as
#   local/data.sh --data_dir data --demo_size {tiny,default,large} [more options]
# The corpus generator itself is `python -m usad2.bin.prepare_data`; until it exists this
# script says so and succeeds, so that the later stages can be developed.
set -euo pipefail

data_dir=data           # where the data dirs are written
demo_size=default       # demo corpus size: tiny, default or large
help_message="Usage: $0 [--data_dir data] [--demo_size default]"
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh

python=${USAD2_PYTHON:-python3}
if "${python}" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('usad2.bin.prepare_data') is None)" 2>/dev/null; then
    "${python}" -m usad2.bin.prepare_data --out_dir "${data_dir}" --demo_size "${demo_size}"
else
    echo "demo corpus generator: not implemented yet"
fi
