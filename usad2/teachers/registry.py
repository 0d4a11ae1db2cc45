"""Teacher cards by name, and building a teacher from its card.

Cards are YAML files `<name>.yaml`. The package ships some in `usad2/teachers/cards/`; a user
directory (`$USAD2_TEACHER_CARDS`, several joined by the path separator, or `card_dirs=`)
overrides them by name, so a site can point a card at its own checkpoint without editing the
package. A card's `family` selects the Teacher class: `FAMILY_MODULES` maps it to the module
that defines (and registers) that class, imported only when a teacher of that family is built,
so listing cards never imports torch models, transformers or onnxruntime.

Files a teacher reads are resolved here too (`source_files`): a card lists them under
`source.files` (fetched into `$USAD2_CACHE/<name>/` by `usad2.bin.fetch_teachers`) or names a
`source.path`, in which `${USAD2_CACHE}` and `~` are expanded; `build_teacher(name,
checkpoint=PATH)` replaces that path (a file, or a directory holding the card's files).
"""
import copy
import importlib
import os

import yaml

from usad2.errors import TeacherError
from usad2.teachers.base import FAMILIES, TeacherCard, cache_dir
from usad2.utils.cli import add_renamed_option

PACKAGE_CARD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cards")
CARD_DIRS_ENV = "USAD2_TEACHER_CARDS"

# family name -> module that defines the Teacher class (registered with base.register_family).
FAMILY_MODULES = {
    "speech_embedding": "usad2.teachers.demo.speech_embedding",
    "resemblyzer": "usad2.teachers.demo.resemblyzer",
    "yamnet": "usad2.teachers.demo.yamnet",
    "basic_pitch": "usad2.teachers.demo.basic_pitch",
    "hf_wavlm": "usad2.teachers.families.hf_wavlm",
    "whisper": "usad2.teachers.families.whisper",
    "af_whisper": "usad2.teachers.families.af_whisper",
    "atst_frame": "usad2.teachers.families.atst_frame",
    "muq": "usad2.teachers.families.muq",
    "s3prl": "usad2.teachers.families.s3prl",
    "fairseq2": "usad2.teachers.families.fairseq2",
}


def card_search_path(card_dirs=None):
    """Directories searched for cards, highest priority first: given or env dirs, then the package's.

    `card_dirs` is a list, or one string in the form of `$USAD2_TEACHER_CARDS` and of the commands'
    `--teacher_cards` (directories joined by the path separator); None reads the environment.
    """
    if card_dirs is None:
        card_dirs = os.environ.get(CARD_DIRS_ENV, "")
    if isinstance(card_dirs, (str, os.PathLike)):
        card_dirs = [d for d in os.fspath(card_dirs).split(os.pathsep) if d]
    return [os.fspath(d) for d in card_dirs] + [PACKAGE_CARD_DIR]


def add_teacher_cards_option(parser, default_from_env=True, help_extra=""):
    """Add `--teacher_cards`, the one spelling of the user card folder in every command.

    Its default is `$USAD2_TEACHER_CARDS` (None with `default_from_env=False`: the command reads
    the variable itself when it loads cards, so that a default does not end up in its recorded
    arguments), then only the package's cards; the value has the environment variable's form
    (directories joined by the path separator). The old spelling `--card_dir` stops with an error
    naming `--teacher_cards`.
    """
    default = (os.environ.get(CARD_DIRS_ENV) or None) if default_from_env else None
    shown = "%(default)s" if default_from_env else "its value when cards are read"
    parser.add_argument("--teacher_cards", default=default,
                        help="user teacher card directories (joined by the path separator), overriding the "
                             f"package's cards by name (default: ${CARD_DIRS_ENV}: {shown}){help_extra}")
    add_renamed_option(parser, "--card_dir", "--teacher_cards")


def card_path(name, card_dirs=None):
    """The file that defines card `name` (the first in the search path), or a TeacherError."""
    for directory in card_search_path(card_dirs):
        path = os.path.join(directory, f"{name}.yaml")
        if os.path.isfile(path):
            return path
    raise TeacherError(f"unknown teacher {name!r}: no {name}.yaml in {card_search_path(card_dirs)}; "
                       f"known: {', '.join(list_cards(card_dirs)) or 'none'}")


def read_card(path):
    """Parse and validate one card file; every problem names the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise TeacherError(f"teacher card {path}: not valid YAML: {e}") from None
    except OSError as e:
        raise TeacherError(f"teacher card {path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise TeacherError(f"teacher card {path}: expected a mapping of keys, got {type(data).__name__}")
    stem = os.path.splitext(os.path.basename(path))[0]
    if data.get("name") != stem:
        raise TeacherError(f"teacher card {path}: name {data.get('name')!r} must equal the file name {stem!r}")
    try:
        return TeacherCard.from_dict(data, origin=path)
    except TypeError as e:
        raise TeacherError(f"teacher card {path}: {e}") from None
    except TeacherError as e:
        msg = str(e)
        raise TeacherError(msg if path in msg else f"{msg} (in {path})") from None


def load_card(name, card_dirs=None):
    """The TeacherCard called `name` (user directories override the package's cards)."""
    return read_card(card_path(name, card_dirs))


def list_cards(card_dirs=None):
    """Sorted names of every card in the search path."""
    names = set()
    for directory in card_search_path(card_dirs):
        if os.path.isdir(directory):
            names.update(f[:-5] for f in os.listdir(directory) if f.endswith(".yaml") and not f.startswith("."))
    return sorted(names)


def _expand(path, cache):
    return os.path.expanduser(str(path).replace("${USAD2_CACHE}", cache).replace("$USAD2_CACHE", cache))


def source_files(card, cache=None):
    """Map each file the card needs to its local path (existing or not).

    With `source.files`: `<source.path or $USAD2_CACHE/<name>>/<file>`. With only
    `source.path` (a single checkpoint file or directory): {"checkpoint": that path}.
    """
    cache = os.fspath(cache) if cache is not None else cache_dir()
    src = card.source or {}
    base = _expand(src["path"], cache) if src.get("path") else os.path.join(cache, card.name)
    files = src.get("files")
    if files:
        if not isinstance(files, dict):
            raise TeacherError(f"teacher card {card.name}: source.files must map file names to their details")
        if os.path.isfile(base) and len(files) == 1:
            return {next(iter(files)): base}
        return {fname: os.path.join(base, fname) for fname in files}
    if src.get("path"):
        return {"checkpoint": base}
    return {}


def require_files(card, cache=None):
    """Like `source_files`, but a missing file is a TeacherError that says how to fetch it."""
    paths = source_files(card, cache)
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise TeacherError(f"teacher {card.name}: missing {', '.join(missing)}; run "
                           f"`python -m usad2.bin.fetch_teachers --teachers {card.name}` (cache "
                           f"{cache if cache is not None else cache_dir()}) or pass checkpoint=PATH")
    return paths


def is_available(card, cache=None):
    """True/False when the card's files are (not) all present; None when it declares none."""
    paths = source_files(card, cache)
    if not paths:
        return None
    return all(os.path.exists(p) for p in paths.values())


def family_class(family):
    """The Teacher class registered for `family`, importing its module on first use."""
    if family not in FAMILIES:
        module = FAMILY_MODULES.get(family)
        if module is None:
            raise TeacherError(f"unknown teacher family {family!r}; known: {sorted(set(FAMILY_MODULES) | set(FAMILIES))}")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise TeacherError(f"teacher family {family!r}: cannot import {module}: {e}") from None
        if family not in FAMILIES:
            raise TeacherError(f"teacher family {family!r}: {module} did not register it (register_family)")
    return FAMILIES[family]


def with_overrides(card, checkpoint=None, **options):
    """A copy of `card` with a local checkpoint path and/or option values replaced."""
    card = copy.deepcopy(card)
    if checkpoint is not None:
        card.source = dict(card.source or {}, path=os.path.abspath(os.fspath(checkpoint)))
    if options:
        card.options = dict(card.options or {}, **options)
    return card


def build_teacher(name_or_card, cache=None, device="cpu", card_dirs=None, checkpoint=None, **options):
    """Build the frozen teacher for a card name or TeacherCard.

    `checkpoint` replaces the card's source path; other keyword arguments override
    `card.options` (e.g. yamnet's `hop_seconds`).
    """
    card = name_or_card if isinstance(name_or_card, TeacherCard) else load_card(name_or_card, card_dirs)
    card = with_overrides(card, checkpoint, **options)
    cls = family_class(card.family)
    return cls(card, cache=cache, device=device)
