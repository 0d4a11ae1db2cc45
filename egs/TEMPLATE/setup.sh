#!/usr/bin/env bash
# Create a new usad2 recipe beside this template:
#
#   egs/TEMPLATE/setup.sh egs/<name>
#
# The new directory gets relative symlinks utils -> ../../utils, usad2.sh -> ../TEMPLATE/usad2.sh
# and path.sh -> ../TEMPLATE/path.sh, its own copies of cmd.sh and conf/slurm.conf (launcher
# choice is per recipe), a thin run.sh, and local/data.sh: a template that explains what to
# write and fails until it is written. An existing directory is never touched. The recipe is
# assembled in a temporary directory and renamed into place, so an interrupted run leaves nothing.
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    echo "usage: $0 egs/<name>   (creates a new recipe directory next to egs/TEMPLATE)" >&2
    exit 1
fi
template_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
egs_dir=$(dirname "${template_dir}")
target="${1%/}"
name=$(basename -- "${target}")

[[ "${name}" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || { echo "$0: bad recipe name '${name}'" >&2; exit 1; }
if [ -e "${target}" ] || [ -L "${target}" ]; then
    echo "$0: ${target} already exists; refusing to overwrite it" >&2
    exit 1
fi
parent=$(cd "$(dirname -- "${target}")" 2>/dev/null && pwd) \
    || { echo "$0: $(dirname -- "${target}") does not exist" >&2; exit 1; }
if [ "${parent}" != "${egs_dir}" ]; then
    echo "$0: recipes live in ${egs_dir} (path.sh finds the repository at ../..), not in ${parent}" >&2
    exit 1
fi

tmp=$(mktemp -d "${egs_dir}/.${name}.tmp.XXXXXX")
trap 'rm -rf -- "${tmp}"' EXIT
chmod 0755 "${tmp}"
mkdir -p "${tmp}/conf" "${tmp}/local"
ln -s ../../utils "${tmp}/utils"
ln -s ../TEMPLATE/usad2.sh "${tmp}/usad2.sh"
ln -s ../TEMPLATE/path.sh "${tmp}/path.sh"
cp "${template_dir}/cmd.sh" "${tmp}/cmd.sh"
cp "${template_dir}/slurm.conf" "${tmp}/conf/slurm.conf"

cat > "${tmp}/run.sh" <<'EOF'
#!/usr/bin/env bash
# Recipe run script: set this recipe's defaults here; every stage lives in usad2.sh.
#   ./run.sh --help      every option with its value for this recipe
#   ./run.sh --stage 2   restart from stage 2
# Name the training configs here once you write them (their file names become part of the
# experiment tag): --distill_config conf/distill.yaml --plus_config conf/plus.yaml
# Options of local/data.sh (your corpus, its subsets) go in --local_data_opts "...".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

./usad2.sh \
    --student tiny \
    --teachers "speech_embedding,yamnet,basic_pitch" \
    --teacher_mode offline \
    "$@"
EOF

cat > "${tmp}/local/data.sh" <<'EOF'
#!/usr/bin/env bash
# Stage 1 of this recipe: write the Kaldi data dirs of your corpus. usad2.sh calls
#   local/data.sh --data_dir data [the words of run.sh's --local_data_opts]
# What to write, for each set (${data_dir}/train, ${data_dir}/dev, ${data_dir}/test):
#   wav.scp     "<utt-id> <audio path>" (any format sox reads), sorted by utt-id
#   utt2domain  "<utt-id> speech|audio|music|unknown" (drives the domain-aware weights)
#   optional: segments, utt2spk, utt2<label> files for probing
# Use a corpus preparer of usad2.data.corpora when one exists (egs/multidomain/local/data.sh), e.g.
#   "${USAD2_PYTHON:-python3}" -m usad2.bin.prepare_corpus --corpus librispeech --root ... --out ...
# Corpus roots are machine-specific: put them in the git-ignored db.local.sh (path.sh sources
# it), never in tracked files. Delete the two lines at the end once this script does its job.
set -euo pipefail

data_dir=data           # where the data dirs are written
# add one line per option of your corpus (subsets, size...); run.sh passes them as --local_data_opts
help_message="Usage: $0 [--data_dir data]"
# shellcheck source=/dev/null
. utils/parse_options.sh

echo "$0: not written yet: edit it to create ${data_dir}/{train,dev,test} (see its header)" >&2
exit 1
EOF
chmod +x "${tmp}/run.sh" "${tmp}/local/data.sh"

mv -T -- "${tmp}" "${target}"
trap - EXIT
echo "created recipe ${target}: now write ${target}/local/data.sh, then run ${target}/run.sh"
