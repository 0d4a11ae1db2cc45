#!/usr/bin/env bash
# Stage 1 of egs/multidomain: the Kaldi data dirs <data_dir>/{train,dev,test}, every utterance
# with utt2domain. Called by usad2.sh as
#   local/data.sh --data_dir data [local_data_opts ...]
# where run.sh's local_data_opts start with --demo_size (its own --demo_size, default "default").
# Two sources:
# - the demo corpus (default): speech, music and general audio generated from Debian packages,
#   with per-domain sets <data_dir>/{speech,music,audio}_{train,dev,test} and task labels; the
#   work is `python -m usad2.bin.prepare_demo` (skipped when already done; resumes).
# - real corpora on disk (--corpora NAME[=ROOT],...): each split of each corpus is prepared by
#   `python -m usad2.bin.prepare_corpus` into <data_dir>/<name>_<split> (the corpus's own
#   subsets, options <name>_{train,dev,test} below; an empty one means the corpus has no such
#   split), then the splits are combined into <data_dir>/{train,dev,test} with ids prefixed by
#   `<name>-`. Roots without `=ROOT` come from db.sh (set them in db.local.sh). From run.sh:
#     ./run.sh --local_data_opts "--corpora librispeech,audioset,jamendo"
#     ./run.sh --local_data_opts "--corpora librispeech=/data/LibriSpeech --librispeech_train train-clean-100"
#   or put these options in a NAME=VALUE file: --local_data_opts "--config conf/corpora.conf".
set -euo pipefail

data_dir=data           # where the data dirs are written
demo_size=default       # demo corpus size: tiny, default or large (unused with --corpora)
seed=0                  # random seed of the demo corpus (same seed, same corpus)
train_soundfonts=fluidr3  # SoundFonts of the demo's train music, comma-separated (fluidr3, gmbank, opl3; test renders with timgm6mb)
nj=2                    # parallel demo generation workers
force=false             # redo the work even when it is up to date
corpora=""              # real corpora instead of the demo: NAME[=ROOT],... (NAME: librispeech, librilight, voxpopuli, gigaspeech, commonvoice, audioset, jamendo)
librispeech_train=train-clean-100,train-clean-360,train-other-500  # LibriSpeech folders
librispeech_dev=dev-clean
librispeech_test=test-clean
librilight_train=small,medium,large  # Libri-Light has no dev or test split
librilight_dev=""
librilight_test=""
librilight_chunk_seconds=20  # longest utterance cut from Libri-Light's voice activity
voxpopuli_train=train   # VoxPopuli train, dev, test (transcribed) or unlabelled
voxpopuli_dev=dev
voxpopuli_test=test
voxpopuli_lang=en       # VoxPopuli language folder
gigaspeech_train=XL     # GigaSpeech XS, S, M, L or XL (each contains the smaller ones)
gigaspeech_dev=DEV
gigaspeech_test=TEST
commonvoice_train=train  # Common Voice TSV names
commonvoice_dev=dev
commonvoice_test=test
commonvoice_lang=en     # Common Voice language folder
audioset_train=balanced_train,unbalanced_train  # AudioSet segment lists (no dev split)
audioset_dev=""
audioset_test=eval
jamendo_train=splits/split-0/autotagging-train.tsv  # MTG-Jamendo TSVs under data/
jamendo_dev=splits/split-0/autotagging-validation.tsv
jamendo_test=splits/split-0/autotagging-test.tsv
help_message="Usage: $0 [--data_dir data] [--demo_size default] [--corpora NAME[=ROOT],...] [--<name>_{train,dev,test} SUBSETS]"
# shellcheck source=utils/parse_options.sh
. utils/parse_options.sh

log() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (local/data.sh) $*" >&2
}
die() {
    log "ERROR: $*"
    exit 1
}
python=${USAD2_PYTHON:-python3}

if [ -z "${corpora}" ]; then
    exec "${python}" -m usad2.bin.prepare_demo --out "${data_dir}" --size "${demo_size}" \
        --seed "${seed}" --nj "${nj}" --force "${force}" --train_soundfonts "${train_soundfonts}"
fi

# The demo's stamp would skip the demo later while train/dev/test hold real corpora.
[ ! -f "${data_dir}/.done" ] || die "${data_dir} holds the demo corpus: give real corpora their own" \
    "folders (run.sh --datadir data_real --dumpdir dump_real --expdir exp_real)"
# shellcheck source=egs/multidomain/db.sh
. ./db.sh

# Check every corpus and split before the (long) preparation starts.
declare -A roots=()
declare -A parts=([train]="" [dev]="" [test]="")
declare -A prefixes=([train]="" [dev]="" [test]="")
IFS=, read -ra _entries <<< "${corpora}"
names=()
for _entry in "${_entries[@]}"; do
    name=${_entry%%=*}
    root=""
    [[ "${_entry}" != *=* ]] || root=${_entry#*=}
    case "${name}" in
        librispeech|librilight|voxpopuli|gigaspeech|commonvoice|audioset|jamendo) ;;
        *) die "--corpora: unknown corpus '${name}' (librispeech, librilight, voxpopuli, gigaspeech, commonvoice, audioset or jamendo)" ;;
    esac
    [ -z "${roots[${name}]+set}" ] || die "--corpora: ${name} given twice"
    _root_var=${name^^}
    root=${root:-${!_root_var:-}}
    [ -n "${root}" ] || die "no root for ${name}: give --corpora ${name}=PATH or set ${_root_var} in db.local.sh"
    [ -d "${root}" ] || die "${name}: ${root} is not a directory"
    roots[${name}]=${root}
    names+=("${name}")
    for split in train dev test; do
        _subsets_var="${name}_${split}"
        [ -z "${!_subsets_var}" ] || parts[${split}]+=" ${data_dir}/${name}_${split}"
        [ -z "${!_subsets_var}" ] || prefixes[${split}]+=" ${name}-"
    done
done
for split in train dev test; do
    [ -n "${parts[${split}]}" ] || die "no corpus of --corpora ${corpora} has a ${split} split: set --<name>_${split}"
done

for name in "${names[@]}"; do
    _extra=()
    case "${name}" in
        voxpopuli) _extra=(--lang "${voxpopuli_lang}") ;;
        commonvoice) _extra=(--lang "${commonvoice_lang}") ;;
        librilight) _extra=(--chunk_seconds "${librilight_chunk_seconds}") ;;
    esac
    for split in train dev test; do
        _subsets_var="${name}_${split}"
        subsets=${!_subsets_var}
        [ -n "${subsets}" ] || continue
        out="${data_dir}/${name}_${split}"
        _cmd=("${python}" -m usad2.bin.prepare_corpus --corpus "${name}" --root "${roots[${name}]}"
              --out "${out}" --subsets "${subsets}" "${_extra[@]+"${_extra[@]}"}")
        # skipped when the same command already wrote it (--force true redoes it)
        stamp="${data_dir}/.corpora/${name}_${split}.cmd"
        if [ "${force}" = false ] && [ -f "${out}/wav.scp" ] && [ -f "${stamp}" ] \
            && [ "$(cat "${stamp}")" = "$(printf '%s\n' "${_cmd[@]}")" ]; then
            log "${out}: up to date"
        else
            log "${name} ${split} (${subsets}) <- ${roots[${name}]}"
            "${_cmd[@]}"
            mkdir -p "$(dirname "${stamp}")"
            printf '%s\n' "${_cmd[@]}" > "${stamp}"
        fi
    done
done

for split in train dev test; do
    read -ra _inputs <<< "${parts[${split}]}"
    read -ra _prefixes <<< "${prefixes[${split}]}"
    log "${data_dir}/${split} <- ${_inputs[*]}"
    "${python}" -m usad2.bin.combine_data "${data_dir}/${split}" "${_inputs[@]}" --prefixes "${_prefixes[@]}"
done
