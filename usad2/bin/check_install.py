"""Print the versions of usad2's stack and fail clearly when a piece is missing.

    python -m usad2.bin.check_install [--optional]

Required packages must import at the pinned versions; system tools (sox, ffmpeg, espeak-ng,
flite, fluidsynth) must be on PATH. The s3prl hook state (whether `-u usad2` resolves) is
reported too. Exit status 1 lists everything that is missing, not only the first.
"""
import importlib
import shutil
import sys

# (import name, pinned version or None for "any")
REQUIRED = [
    ("torch", "2.8.0"),
    ("torchaudio", "2.8.0"),
    ("fairseq2", "0.6"),
    ("fairseq2n", "0.6"),
    ("s3prl", "0.4.18"),
    ("kaldiio", "2.18.1"),
    ("sox", "1.5.0"),
    ("numpy", None),
    ("yaml", None),
    ("soundfile", None),
    ("transformers", None),
    ("huggingface_hub", None),
    ("onnxruntime", None),
    ("tensorboardX", None),
    ("tqdm", None),
    ("matplotlib", None),
]
OPTIONAL = [("whisper", None), ("pytest", None), ("hypothesis", None)]
TOOLS = ["sox", "ffmpeg", "espeak-ng", "flite", "fluidsynth"]


def _version(module):
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib import metadata

        try:
            version = metadata.version(module.__name__)
        except metadata.PackageNotFoundError:
            version = "?"
    return str(version).split("+")[0]


def check_package(name, pinned):
    """Return (line to print, problem or None)."""
    try:
        module = importlib.import_module(name)
    except Exception as e:  # any import failure is reported, not raised
        return f"{name:16s} MISSING ({type(e).__name__}: {e})", f"{name} does not import"
    version = _version(module)
    if pinned and version != pinned:
        return f"{name:16s} {version} (want {pinned})", f"{name} is {version}, usad2 pins {pinned}"
    return f"{name:16s} {version}", None


def s3prl_hook_state():
    """Whether s3prl's hub lists the usad2 entries after `import s3prl.hub`."""
    try:
        import s3prl.hub as hub
    except Exception as e:
        return f"s3prl hub does not import: {e}"
    found = [n for n in ("usad2", "usad2_local") if hasattr(hub, n)]
    return "registered (" + ", ".join(found) + ")" if found else "NOT registered"


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optional", action="store_true", help="also require optional packages")
    args = parser.parse_args(argv)
    import usad2

    print(f"python           {sys.version.split()[0]} ({sys.executable})")
    print(f"usad2            {usad2.__version__} ({usad2.__file__})")
    problems = []
    for name, pinned in REQUIRED + (OPTIONAL if args.optional else []):
        line, problem = check_package(name, pinned)
        print(line)
        if problem:
            problems.append(problem)
    if not args.optional:
        for name, _ in OPTIONAL:
            line, _ = check_package(name, None)
            print(line + " (optional)")
    for tool in TOOLS:
        path = shutil.which(tool)
        print(f"{tool:16s} {path or 'MISSING'}")
        if not path:
            problems.append(f"{tool} not on PATH (run tools/setup.sh)")
    print(f"s3prl hook       {s3prl_hook_state()}")
    if problems:
        print("check_install FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("check_install OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
