#!/usr/bin/env bash
# USAD 2.0 recipe on the embedded demo corpus (speech, general audio, music), CPU-sized.
#   ./run.sh                          every stage with the demo teachers and the tiny student
#   ./run.sh --demo_size tiny         the CI-sized corpus
#   ./run.sh --stage 5 --stop_stage 7 only distil and export
#   ./run.sh --help                   every option of ../TEMPLATE/usad2.sh with its value here
# Options given here are this recipe's defaults; any of them can be overridden on the command
# line (later options win). The stages themselves live in usad2.sh (a symlink to the template).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Stage 1 demo teachers, one per domain: speech, general audio, music.
teachers="speech_embedding,yamnet,basic_pitch"
# Stage 2 ("+"): Resemblyzer in Whisper's role (speech), YAMNet's top layers in AF3's (any).
plus_teachers="resemblyzer,yamnet"

./usad2.sh \
    --demo_size default \
    --student tiny \
    --teachers "${teachers}" \
    --plus_teachers "${plus_teachers}" \
    --teacher_mode offline \
    --min_duration 0.2 \
    --max_duration 30 \
    --nj 2 \
    "$@"
