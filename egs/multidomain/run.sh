#!/usr/bin/env bash
# USAD 2.0 recipe on the embedded demo corpus (speech, general audio, music), CPU-sized.
#   ./run.sh                          every stage with the demo teachers and the mini6 student
#   ./run.sh --demo_size tiny         the CI-sized corpus
#   ./run.sh --stage 5 --stop_stage 7 only distil and export
#   ./run.sh --help                   every option of ../TEMPLATE/usad2.sh with its value here
# Real corpora instead of the demo (roots in db.local.sh; README "Real corpora"):
#   ./run.sh --local_data_opts "--corpora librispeech,audioset,jamendo" --datadir data_real --dumpdir dump_real --expdir exp_real
# The paper's teachers, from local checkpoints (nothing is downloaded; README "Paper teachers"):
#   ./run.sh --teachers wavlm_base_plus,atst_frame,muq \
#       --plus_teachers whisper_large_v3,af_whisper --run_plus true \
#       --teacher_checkpoints wavlm_base_plus=/models/wavlm-base-plus,atst_frame=/models/atstframe_base.ckpt,muq=/models/MuQ-large-msd-iter,whisper_large_v3=/models/whisper-large-v3,af_whisper=/models/audio-flamingo-3
# Options given here are this recipe's defaults; any of them can be overridden on the command
# line (later options win). The stages themselves live in usad2.sh (a symlink to the template),
# which knows nothing of the demo corpus: --demo_size is this script's own option, translated
# into the configs it names and into local/data.sh's options.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Stage 1 demo teachers, one per domain: speech, general audio, music.
teachers="speech_embedding,yamnet,basic_pitch"
# Stage 2 ("+"): Resemblyzer in Whisper's role (speech), YAMNet's last layer in AF3's. These
# stand-ins are far weaker than Whisper and AF3, so stage 2 keeps distilling the stage-1 teachers
# beside them (--plus_keep_stage1 true; the paper drops them: --plus_keep_stage1 false). Measured
# over three seeds, dropping them costs 0.030 overall, keeping them 0 (RESULTS.md section 2).
# Stage 2 without Resemblyzer, still probed (--plus_teachers yamnet --probe_teachers resemblyzer),
# is no better over six paired runs: overall +0.3 (probe), +0.8 (concat read-out, all of it speech),
# chord quality -0.8 by CV and -5 by the probe (RESULTS.md 2.18).
plus_teachers="resemblyzer,yamnet"

# --demo_size SIZE (tiny, default or large) picks conf/{distill,plus}_SIZE.yaml and reaches
# local/data.sh through --local_data_opts (put before the user's own local_data_opts); every other
# option goes to usad2.sh unchanged, after this recipe's defaults, so the command line wins.
demo_size=default
local_data_opts=""
help=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --demo_size=*|--demo-size=*) demo_size=${1#*=}; shift ;;
        --local_data_opts=*|--local-data-opts=*) local_data_opts=${1#*=}; shift ;;
        --demo_size|--demo-size|--local_data_opts|--local-data-opts)
            [ $# -ge 2 ] || { echo "$0: option '$1' needs a value" >&2; exit 1; }
            if [[ "$1" == --demo* ]]; then demo_size=$2; else local_data_opts=$2; fi
            shift 2 ;;
        -h|--help) help=true; args+=("$1"); shift ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("${@:1:2}"); shift $(( $# >= 2 ? 2 : 1 )) ;;  # an option and its value
        *) args+=("$1"); shift ;;
    esac
done
case "${demo_size}" in
    tiny|default) configs=(--distill_config "conf/distill_${demo_size}.yaml" --plus_config "conf/plus_${demo_size}.yaml") ;;
    large) configs=() ;;  # no config measured at this size yet: the verbs' defaults
    *) echo "$0: --demo_size: tiny, default or large, got '${demo_size}'" >&2; exit 1 ;;
esac
if [ "${help}" = true ]; then  # then usad2.sh prints its own options with this recipe's values
    printf '%s\n  --%-22s %-24s %s\n\n' "Options of this recipe's run.sh:" demo_size "\"${demo_size}\"" \
        "# demo corpus size: tiny, default or large (picks conf/{distill,plus}_<size>.yaml; reaches local/data.sh)"
fi

# Training runs as two processes of one thread each (torchrun, gloo; the same global batches as one
# process): on the 2-core CPU a step takes 0.47 s that way against 0.61 s for one process with two
# intra-op threads, which barely beats one thread (README "Recipe time per stage").
./usad2.sh \
    --student mini6 \
    --nproc 2 \
    --teachers "${teachers}" \
    --plus_teachers "${plus_teachers}" \
    --plus_keep_stage1 true \
    --teacher_mode offline \
    --min_duration 0.2 \
    --max_duration 30 \
    --nj 2 \
    "${configs[@]+"${configs[@]}"}" \
    --local_data_opts "--demo_size ${demo_size}${local_data_opts:+ ${local_data_opts}}" \
    "${args[@]+"${args[@]}"}"
