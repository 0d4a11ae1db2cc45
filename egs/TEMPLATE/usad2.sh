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
stage=0                 # first stage to run (0-9)
stop_stage=100          # last stage to run
nj=4                    # parallel jobs of the array stages (teacher targets)
nproc=1                 # training processes (torchrun --nproc-per-node); 1 runs plain python
python=$(dirname "$(dirname "${_template_dir}")")/tools/venv/bin/python  # interpreter with usad2
force=false             # true: redo stages even when their .done stamp matches
tag=""                  # experiment name (exp/<tag>); empty: usad2_<student>_<teacher_mode>[_<distill config name>]
datadir=data            # Kaldi data dirs of stage 1
dumpdir=dump            # formatted audio (stage 2-3) and teacher targets (stage 4)
expdir=exp              # experiments (stages 5-9)

# Data
demo_size=default       # demo corpus size: tiny, default or large
local_data_opts=""      # extra options for local/data.sh
train_set=train         # training set name under data/
dev_set=dev             # development set name
test_sets="test"        # evaluation sets (space-separated)
min_duration=0.5        # stage 2 drops clips shorter than this (seconds)
max_duration=30         # stage 2 drops clips longer than this (seconds)

# Teachers and student
teachers=""             # stage-1 teacher cards, comma-separated (empty: the verbs' defaults)
plus_teachers=""        # stage-2 teacher cards, comma-separated
teacher_checkpoints=""  # local checkpoints NAME=PATH,... (e.g. wavlm_base_plus=/models/wavlm-base-plus): stage 0 writes cards pointing at them
teacher_mode=offline    # offline: targets extracted in stage 4; online: teachers run in training
student=tiny            # student preset (tiny, mini, small, base, large, xlarge, xxlarge; <preset>_f1)
distill_config=""       # YAML config of stage 5 (empty: conf/distill_<demo_size>.yaml if present, else the verb's defaults)
plus_config=""          # YAML config of stage 6 (empty: conf/plus_<demo_size>.yaml if present, else the verb's defaults)
run_plus=true           # run stage 6 (the "+" stage-2 training, the paper's full method); false: stop after stage 1
skip_stage2=false       # true: the same as --run_plus false (ablation "no stage 2")
stage2_init=stage1      # stage 6 starts from: stage1 (the stage-5 model) or scratch (a random --student)
plus_keep_stage1=false  # true: stage 6 keeps distilling the stage-1 teachers beside the "+" ones (false: dropped, as the paper)
omega=""                # domain weight ω of stages 5 and 6 (empty: the verb's default, 10; 1 = uniform)
drop_teachers=""        # teacher cards removed from --teachers, comma-separated (ablation, e.g. basic_pitch)
export_checkpoint=last.pt  # checkpoint (under <exp>/checkpoints/) that stage 7 exports
precision=auto          # compute precision of stages 4 (torch teachers), 5, 6 (training) and 8 (probe features): fp32, bf16 (autocast) or auto (bf16 where the CPU/GPU has bf16 matrix units)
distill_args=""         # extra options for stage 5 and 6 (e.g. "--max_steps 100")
probe_args=""           # extra options for stage 8
s3prl_probe=false       # true: stage 8 also runs s3prl's runner (-u usad2) on a demo classification task
s3prl_label=instrument_family  # utt2<label> of that task (utterances without the label are left out)
s3prl_steps=200         # s3prl training steps of that task

help_message="Usage: $0 [options]
Runs the usad2 stages [stage, stop_stage]:
  0 fetch teachers   1 data (local/data.sh)   2 format   3 mix   4 teacher targets (offline)
  5 distill          6 distill stage 2 (\"+\"; --run_plus false skips it)   7 export   8 probe   9 report
The final model is the stage-2 one (exp/<tag>_plus/) unless --run_plus false (exp/<tag>/); stages
7-9 write export/, probe/ and report/ into that model's own experiment dir."

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

case "${demo_size}" in tiny|default|large) ;; *) die "--demo_size: tiny, default or large, got '${demo_size}'" ;; esac
case "${teacher_mode}" in offline|online) ;; *) die "--teacher_mode: offline or online, got '${teacher_mode}'" ;; esac
case "${stage2_init}" in stage1|scratch) ;; *) die "--stage2_init: stage1 or scratch, got '${stage2_init}'" ;; esac
case "${precision}" in fp32|bf16|auto) ;; *) die "--precision: fp32, bf16 or auto, got '${precision}'" ;; esac
for _b in skip_stage2 s3prl_probe plus_keep_stage1; do
    case "${!_b}" in true|false) ;; *) die "--${_b}: true or false, got '${!_b}'" ;; esac
done
[ "${skip_stage2}" = false ] || run_plus=false
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
if [ ! -x "${python}" ] && ! command -v "${python}" > /dev/null; then
    die "--python: '${python}' not found (run tools/setup.sh or pass --python)"
fi
if [ -z "${distill_config}" ] && [ -f "conf/distill_${demo_size}.yaml" ]; then
    distill_config="conf/distill_${demo_size}.yaml"
fi
# ESPnet habit: the tag names the student and the config, so runs of different sizes or configs
# never share an experiment dir (a tiny run followed by a default one would otherwise collide)
_config_name=""
[ -z "${distill_config}" ] || _config_name="_$(basename "${distill_config}" .yaml)"
tag=${tag:-usad2_${student}_${teacher_mode}${_config_name}}
if [ -z "${plus_config}" ] && [ -f "conf/plus_${demo_size}.yaml" ]; then
    plus_config="conf/plus_${demo_size}.yaml"
fi
read -ra train_launcher <<< "${train_cmd}"
read -ra extract_launcher <<< "${extract_cmd}"
read -ra local_data_args <<< "${local_data_opts}"
read -ra distill_extra <<< "${distill_args}"
[ -z "${omega}" ] || distill_extra=(--omega "${omega}" "${distill_extra[@]+"${distill_extra[@]}"}")
read -ra probe_extra <<< "${probe_args}"
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
plus_dir="${expdir}/${tag}_plus"
# The experiment dir of the final model: stage 2's when it runs, else stage 1's. Its export,
# probe and report live there, so a path always says which stage it holds.
final_dir="${expdir}/${tag}"
[ "${run_plus}" = false ] || final_dir="${plus_dir}"
# Cards of the teachers given by --teacher_checkpoints (stage 0); stages 4-6 and 8 read them first.
teacher_card_dir="${dumpdir}/teacher_cards"
# Dies when local checkpoints are in use but stage 0 has not written their cards yet.
require_card_dir() {
    [ -z "${teacher_checkpoints}" ] || [ -d "${teacher_card_dir}" ] \
        || die "${teacher_card_dir} is missing: run stage 0 (it writes the cards of --teacher_checkpoints)"
}
# Print "--OPTION <teacher_card_dir>" when local checkpoints are in use.
card_dir_opt() {
    [ -z "${teacher_checkpoints}" ] || printf '%s\n%s\n' "--$1" "${teacher_card_dir}"
}

if [ "${stage}" -le 0 ] && [ "${stop_stage}" -ge 0 ]; then
    log "Stage 0: fetch teachers -> teacher cache${teacher_checkpoints:+; local checkpoints -> ${teacher_card_dir}/}"
    all_teachers="${teachers}"
    [ "${run_plus}" = false ] || all_teachers="${teachers:+${teachers},}${plus_teachers}"
    if [ -z "${all_teachers}" ] && [ -z "${teacher_checkpoints}" ]; then
        "${python}" -m usad2.bin.fetch_teachers --force "${force}"  # every fetchable card
    else
        # cards for the teachers given by path; prints the teachers that still need fetching
        _fetch=$("${python}" -m usad2.bin.teachers localize --checkpoints "${teacher_checkpoints}" \
            --out "${teacher_card_dir}" --teachers "${all_teachers}" --force "${force}" --log_level INFO)
        if [ -n "${_fetch}" ]; then
            "${python}" -m usad2.bin.fetch_teachers --teachers "${_fetch}" --force "${force}"
        else
            log "Stage 0: nothing to fetch (every teacher is local)"
        fi
    fi
fi

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data: local/data.sh -> ${datadir}/"
    [ -x local/data.sh ] || die "local/data.sh missing or not executable in $(pwd)"
    local/data.sh --data_dir "${datadir}" --demo_size "${demo_size}" \
        "${local_data_args[@]+"${local_data_args[@]}"}"
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
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    if [ "${teacher_mode}" = online ]; then
        log "Stage 4: teacher targets: skipped (--teacher_mode online)"
    else
        log "Stage 4: teacher targets -> ${dumpdir}/targets/<teacher>/<set>"
        all_teachers="${teachers}"
        [ "${run_plus}" = false ] || all_teachers="${teachers:+${teachers},}${plus_teachers}"
        IFS=, read -ra _tlist <<< "${all_teachers}"
        [ "${#_tlist[@]}" -gt 0 ] || die "Stage 4 needs --teachers"
        require_card_dir
        mapfile -t _c < <(card_dir_opt teacher_cards)
        for teacher in "${_tlist[@]}"; do
            for dset in "${train_set}_mix" "${dev_set}"; do
                out="${dumpdir}/targets/${teacher}/${dset}"
                _x=(--teacher "${teacher}" --data "${dumpdir}/raw/${dset}" --out "${out}" --nj "${nj}"
                    --progress false --precision "${precision}" "${_c[@]+"${_c[@]}"}")
                "${extract_launcher[@]}" JOB=1:"${nj}" "${out}/log/extract.JOB.log" \
                    "${python}" -m usad2.bin.extract_teacher "${_x[@]}" --job JOB --force "${force}"
                # every shard is stamped now: this merges them (and checks they are complete)
                "${python}" -m usad2.bin.extract_teacher "${_x[@]}"
            done
        done
    fi
fi

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: distill stage 1 -> ${expdir}/${tag}/"
    require_card_dir
    mapfile -t _o < <(opt_if teachers "${teachers}"; opt_if config "${distill_config}"
                      card_dir_opt teacher_cards)
    "${train_launcher[@]}" "${expdir}/${tag}/train.log" "${train_prefix[@]}" usad2.bin.distill \
        "${_o[@]+"${_o[@]}"}" --student "${student}" --teacher_mode "${teacher_mode}" \
        --train_dir "${dumpdir}/raw/${train_set}_mix" --dev_dir "${dumpdir}/raw/${dev_set}" \
        --targets_dir "${dumpdir}/targets" --out_dir "${expdir}/${tag}" --precision "${precision}" \
        "${distill_extra[@]+"${distill_extra[@]}"}"
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    if [ "${run_plus}" = false ]; then
        log "Stage 6: distill stage 2: skipped (--run_plus false)"
    else
        log "Stage 6: distill stage 2 (\"+\") from ${stage2_init} -> ${plus_dir}/"
        _init=(--init "${expdir}/${tag}")
        [ "${stage2_init}" = stage1 ] || _init=(--student "${student}")  # ablation: from a random init
        _keep=()  # the stage-1 teachers (and their heads, from the init) stay in the loss
        [ "${plus_keep_stage1}" = false ] || _keep=(--teachers "${teachers}" --drop_stage1 false)
        require_card_dir
        mapfile -t _o < <(opt_if stage2_teachers "${plus_teachers}"; opt_if config "${plus_config}"
                          card_dir_opt teacher_cards)
        "${train_launcher[@]}" "${plus_dir}/train.log" "${train_prefix[@]}" usad2.bin.distill \
            "${_o[@]+"${_o[@]}"}" "${_init[@]}" "${_keep[@]+"${_keep[@]}"}" --teacher_mode "${teacher_mode}" \
            --train_dir "${dumpdir}/raw/${train_set}_mix" --dev_dir "${dumpdir}/raw/${dev_set}" \
            --targets_dir "${dumpdir}/targets" --out_dir "${plus_dir}" --precision "${precision}" \
            "${distill_extra[@]+"${distill_extra[@]}"}"
    fi
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    # the stage-1 model always (stage 8 compares it with stage 2), then the final one
    _export_dirs=("${expdir}/${tag}")
    [ "${run_plus}" = false ] || _export_dirs+=("${plus_dir}")
    for _d in "${_export_dirs[@]}"; do
        log "Stage 7: export ${_d}/checkpoints/${export_checkpoint} -> ${_d}/export/model.pt"
        "${python}" -m usad2.bin.export --checkpoint "${_d}/checkpoints/${export_checkpoint}" \
            --out "${_d}/export/model.pt" --force "${force}"
    done
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    log "Stage 8: probe -> ${final_dir}/probe/"
    # the final export, its prediction heads (training checkpoint), the stage-1 export when
    # stage 2 ran, each teacher, and the baselines; the feature cache is shared by experiments
    # (teachers and baselines are extracted once)
    probe_dir="${final_dir}"
    _models=(--model "student=${final_dir}/export/model.pt")
    [ "${run_plus}" = false ] || _models+=(--model "student_stage1=${expdir}/${tag}/export/model.pt")
    all_teachers="${teachers}"
    [ "${run_plus}" = false ] || all_teachers="${teachers:+${teachers},}${plus_teachers}"
    IFS=, read -ra _tlist <<< "${all_teachers}"
    _concat=()  # each teacher once: a stage-2 teacher may also be a stage-1 one (probe refuses duplicates)
    for teacher in "${_tlist[@]+"${_tlist[@]}"}"; do
        [[ " ${_concat[*]+"${_concat[*]}"} " != *" ${teacher} "* ]] || continue
        _concat+=("${teacher}")
        _models+=(--model "${teacher}")
    done
    # the topline: all those teachers at once, from their cached features (usad2.probe.features.ConcatProbe)
    [ "${#_concat[@]}" -lt 2 ] || _models+=(--model "teachers_concat=concat:$(IFS=,; echo "${_concat[*]}")")
    _heads_ckpt="${probe_dir}/checkpoints/${export_checkpoint}"
    [ ! -f "${_heads_ckpt}" ] || _models+=(--model "student_heads=heads:${_heads_ckpt}")
    for _ckpt in "${expdir}/${tag}/checkpoints/${export_checkpoint}" "${_heads_ckpt}"; do
        [ ! -f "${_ckpt}" ] || _models+=(--model "teachers_of=${_ckpt}")  # teachers it learnt from
    done
    _models+=(--model fbank --model "random_init=${student}")
    require_card_dir
    _env=()  # teachers given by path: the probe finds their cards through the search path
    [ -z "${teacher_checkpoints}" ] \
        || _env=(env "USAD2_TEACHER_CARDS=${teacher_card_dir}${USAD2_TEACHER_CARDS:+:${USAD2_TEACHER_CARDS}}")
    "${_env[@]+"${_env[@]}"}" "${python}" -m usad2.bin.probe "${_models[@]}" --data_root "${dumpdir}/raw" \
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
    _fid_dirs=("${expdir}/${tag}")
    [ "${run_plus}" = false ] || _fid_dirs+=("${plus_dir}")
    _fid=()
    _t=()
    [ "${teacher_mode}" = online ] || _t=(--targets_dir "${dumpdir}/targets")
    require_card_dir
    _env=()
    [ -z "${teacher_checkpoints}" ] \
        || _env=(env "USAD2_TEACHER_CARDS=${teacher_card_dir}${USAD2_TEACHER_CARDS:+:${USAD2_TEACHER_CARDS}}")
    for _d in "${_fid_dirs[@]}"; do
        log "Stage 9: fidelity of ${_d}/checkpoints/${export_checkpoint} -> ${_d}/fidelity/"
        "${_env[@]+"${_env[@]}"}" "${python}" -m usad2.bin.fidelity \
            --checkpoint "${_d}/checkpoints/${export_checkpoint}" --dev_dir "${dumpdir}/raw/${dev_set}" \
            "${_t[@]+"${_t[@]}"}" --out "${_d}/fidelity" --progress false --force "${force}"
        _fid+=(--fidelity "${_d}/fidelity")
    done
    log "Stage 9: report -> ${final_dir}/report/"
    "${python}" -m usad2.bin.report --probe_dir "${final_dir}/probe" \
        --train_log "${final_dir}" --out_dir "${final_dir}/report" "${_fid[@]}"
fi

log "Finished stages ${stage}-${stop_stage} in ${SECONDS} s"
