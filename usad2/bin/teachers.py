"""List the teacher cards, or show one card and the files it resolves to.

    python -m usad2.bin.teachers list [--cache DIR] [--card_dir DIR]
    python -m usad2.bin.teachers show NAME
"""
import os

import yaml

from usad2.teachers import registry
from usad2.teachers.base import cache_dir
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging

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


def get_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("action", choices=("list", "show"))
    parser.add_argument("name", nargs="?", help="card name (for show)")
    parser.add_argument("--cache", default=cache_dir(), help="teacher cache ($USAD2_CACHE)")
    parser.add_argument("--card_dir", default=None, help="extra teacher card directory (overrides by name)")
    parser.add_argument("--log_level", default="WARNING")
    return parser


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    log = setup_logging(args.log_level)
    log_invocation(log)
    if args.action == "list":
        print(list_table(args.cache, args.card_dir))
    else:
        if not args.name:
            parser.error("show needs a card NAME")
        print(show_card(args.name, args.cache, args.card_dir))
    return 0


if __name__ == "__main__":
    run_main(main)
