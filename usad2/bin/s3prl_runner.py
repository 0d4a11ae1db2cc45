"""s3prl's `run_downstream` with usad2's upstream, and the tools around it.

    python -m usad2.bin.s3prl_runner --print-config example       # path of a shipped config
    python -m usad2.bin.s3prl_runner --list-configs
    python -m usad2.bin.s3prl_runner --install-hook [--site-dir D] # (re)write usad2_s3prl.pth
    python -m usad2.bin.s3prl_runner --hook-status
    python -m usad2.bin.s3prl_runner --make-meta TRAIN_DIR TEST_DIR OUT [--label label]
        # Kaldi data dirs + utt2<label> -> inputs of `-d emotion -c <utterance_classification>`;
        # prints the -o value to pass
    python -m usad2.bin.s3prl_runner -- -m train -u usad2 -k exp/x/export/model.pt \\
        -d example -c "$(python -m usad2.bin.s3prl_runner --print-config example)" --device cpu
    python -m s3prl.run_downstream -m evaluate -e <expdir>/states-2.ckpt --device cpu
        # s3prl never takes --device from the checkpoint: repeat it on a CPU-only machine

After installation the plain `python -m s3prl.run_downstream ...` works the same: the `.pth`
hook (`usad2/s3prl_upstream/hook.py`) registers `-u usad2` and allow-lists the class s3prl's
checkpoints pickle, so `-m evaluate -e <ckpt>` loads under torch >= 2.6 with weights-only
`torch.load`. This wrapper installs the same hook in its own process before running s3prl, so it
also works where the `.pth` file could not be written (read-only site-packages, a foreign
interpreter). `--install-hook` is the fallback installer that tools/setup.sh calls after
`pip install -e .`: setuptools' editable wheels carry no extra files, so the `.pth` cannot
come from setup.py there (a plain `pip install .` gets it from setup.py's build_py).
Arguments after `--` (or any not recognised here) go to s3prl unchanged.
"""
import argparse
import os
import runpy
import sys

from usad2.errors import ConfigError
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "s3prl_upstream", "configs")


def list_configs():
    """Names of the downstream configs shipped with usad2 (s3prl's wheel ships none)."""
    return sorted(n[:-len(".yaml")] for n in os.listdir(CONFIG_DIR) if n.endswith(".yaml"))


def config_path(name):
    """Absolute path of the shipped config `name` (with or without `.yaml`)."""
    name = name[:-len(".yaml")] if name.endswith(".yaml") else name
    path = os.path.join(CONFIG_DIR, name + ".yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"no shipped s3prl config named {name!r} in {CONFIG_DIR}; "
                          f"available: {', '.join(list_configs())}")
    return path


def hook_status(site_dir=None):
    """One line: where the .pth is (or that it is missing) and whether s3prl.hub has usad2."""
    from usad2.s3prl_upstream import hook

    pth = hook.installed_pth(site_dir)
    registered = hook.is_registered()
    return (f"pth: {pth or 'MISSING in ' + (site_dir or hook.default_site_dir())}; "
            f"s3prl hub entries {'registered' if registered else 'NOT registered'}")


def run_downstream(argv):
    """Run s3prl's `run_downstream` with `argv` in this process, the usad2 hook installed."""
    from usad2.s3prl_upstream import hook

    hook.install()
    saved = sys.argv
    sys.argv = ["s3prl.run_downstream"] + list(argv)
    try:
        runpy.run_module("s3prl.run_downstream", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = saved
    return 0


def build_parser():
    parser = make_parser(__doc__)
    # keep the usage examples of the docstring as written; defaults still shown
    parser.formatter_class = type("Formatter", (argparse.ArgumentDefaultsHelpFormatter,
                                                argparse.RawDescriptionHelpFormatter), {})
    parser.allow_abbrev = False  # never swallow a prefix of one of s3prl's options
    parser.add_argument("--print-config", metavar="NAME", help="print the path of a shipped config")
    parser.add_argument("--list-configs", action="store_true", help="list the shipped configs")
    parser.add_argument("--install-hook", action="store_true",
                        help="write usad2_s3prl.pth so that s3prl's hub knows -u usad2")
    parser.add_argument("--hook-status", action="store_true", help="report the hook state")
    parser.add_argument("--make-meta", nargs=3, metavar=("TRAIN_DIR", "TEST_DIR", "OUT"),
                        help="write s3prl emotion-downstream JSON lists from Kaldi data dirs")
    parser.add_argument("--label", default="label", help="label file utt2<LABEL> for --make-meta")
    parser.add_argument("--site-dir", default=None,
                        help="directory for --install-hook/--hook-status; None: this "
                             "interpreter's site-packages")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        ours, passthrough = argv[:cut], argv[cut + 1:]
        args = build_parser().parse_args(ours)
    else:
        args, passthrough = build_parser().parse_known_args(argv)
    logger = setup_logging()
    if args.print_config:
        print(config_path(args.print_config))
        return 0
    if args.list_configs:
        print("\n".join(list_configs()))
        return 0
    log_invocation(logger)
    if args.install_hook:
        from usad2.s3prl_upstream import hook

        path = hook.install_pth(args.site_dir)
        logger.info("wrote %s", path)
        return 0
    if args.make_meta:
        from usad2.s3prl_upstream import classification_meta as meta

        index = meta.write_classification_meta(*args.make_meta, label=args.label)
        logger.info("%d labels: %s", len(index), ", ".join(index))
        print(meta.override_for(args.make_meta[2]))
        return 0
    if args.hook_status:
        print(hook_status(args.site_dir))
        return 0
    if not passthrough:
        raise ConfigError("nothing to do: give an option above or run_downstream arguments "
                          "(see --help)")
    return run_downstream(passthrough)


if __name__ == "__main__":
    run_main(main)
