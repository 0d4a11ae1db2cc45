#!/usr/bin/env bash
# USAD 2.0 recipe on the embedded demo corpus (speech, general audio, music), CPU-sized.
#   ./run.sh                          every stage with the demo teachers and the mini student
#   ./run.sh --demo_size tiny         the CI-sized corpus
#   ./run.sh --stage 5 --stop_stage 7 only distil and export
#   ./run.sh --help                   every option of ../TEMPLATE/usad2.sh with its value here
# Real corpora instead of the demo (roots in db.local.sh; README "Real corpora"):
#   ./run.sh --local_data_opts "--corpora librispeech,audioset,jamendo" --datadir data_real --dumpdir dump_real
# The paper's teachers, from local checkpoints (nothing is downloaded; README "Paper teachers"):
#   ./run.sh --teachers wavlm_base_plus,atst_frame,muq \
#       --plus_teachers whisper_large_v3,af_whisper --run_plus true \
#       --teacher_checkpoints wavlm_base_plus=/models/wavlm-base-plus,atst_frame=/models/atstframe_base.ckpt,muq=/models/MuQ-large-msd-iter,whisper_large_v3=/models/whisper-large-v3,af_whisper=/models/audio-flamingo-3
# Options given here are this recipe's defaults; any of them can be overridden on the command
# line (later options win). The stages themselves live in usad2.sh (a symlink to the template).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Stage 1 demo teachers, one per domain: speech, general audio, music.
teachers="speech_embedding,yamnet,basic_pitch"
# Stage 2 ("+"): Resemblyzer in Whisper's role (speech), YAMNet's last layer in AF3's. These
# stand-ins are far weaker than Whisper and AF3, so stage 2 keeps distilling the stage-1 teachers
# beside them (--plus_keep_stage1 true; the paper drops them: --plus_keep_stage1 false). Measured
# over three seeds, dropping them costs 0.030 overall, keeping them 0 (RESULTS.md section 2).
plus_teachers="resemblyzer,yamnet"

./usad2.sh \
    --demo_size default \
    --student mini \
    --teachers "${teachers}" \
    --plus_teachers "${plus_teachers}" \
    --plus_keep_stage1 true \
    --teacher_mode offline \
    --min_duration 0.2 \
    --max_duration 30 \
    --nj 2 \
    "$@"
