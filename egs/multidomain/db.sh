# shellcheck shell=bash disable=SC2034
# Corpus roots of this recipe (ESPnet's db.sh), read by local/data.sh for `--corpora NAME`
# without `=ROOT`. Each folder holds the corpus as its publisher distributes it; the layout each
# preparer reads is in the docstring of usad2/data/corpora/<name>.py. Leave this file empty of
# machine paths: set the roots in the git-ignored db.local.sh beside it (sourced last), e.g.
#   LIBRISPEECH=/data/LibriSpeech
#   AUDIOSET=/data/audioset
#   JAMENDO=/data/mtg-jamendo-dataset
# or in the environment (`LIBRISPEECH=/data/LibriSpeech ./run.sh ...`).
LIBRISPEECH=${LIBRISPEECH:-}   # folder holding train-clean-100/, dev-clean/, ... and SPEAKERS.TXT
LIBRILIGHT=${LIBRILIGHT:-}     # folder holding small/, medium/, large/
VOXPOPULI=${VOXPOPULI:-}       # folder holding transcribed_data/ and/or unlabelled_data/
GIGASPEECH=${GIGASPEECH:-}     # folder holding GigaSpeech.json and audio/ (decrypted)
COMMONVOICE=${COMMONVOICE:-}   # cv-corpus-<version>/ (with --commonvoice_lang) or one language folder in it
AUDIOSET=${AUDIOSET:-}         # folder holding *_segments.csv (or metadata/) and the downloaded clips
JAMENDO=${JAMENDO:-}           # clone of mtg-jamendo-dataset with data/*.tsv, audio under audio/
if [ -f db.local.sh ]; then
    # shellcheck source=/dev/null
    . ./db.local.sh
fi
