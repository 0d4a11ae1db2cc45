"""Register `-u usad2` with s3prl without editing s3prl's files.

s3prl's hub (`s3prl.hub`) is a module that star-imports every `s3prl.upstream.<name>.hubconf`;
it has no plugin mechanism. usad2 therefore installs a one-line `usad2_s3prl.pth` file into
site-packages (see `install_pth`) whose line imports this module at interpreter start-up. This
module only puts a small finder at the front of `sys.meta_path`; it does not import torch or
s3prl, and for every other module it returns None at once, so it costs nothing when s3prl is
never imported. When one of the watched s3prl modules is imported, the finder lets the normal
finders locate it and wraps its loader so that, right after the module body has run:

- `s3prl.hub` gets the attributes `usad2` and `usad2_local` (the entries of
  `usad2.s3prl_upstream.hubconf`) and nothing else. `run_downstream -u usad2`,
  `getattr(hub, "usad2")` and ESPnet's `S3PRLUpstream("usad2")` all resolve through it.
- `s3prl.downstream.runner` (imported by `run_downstream` before it loads any checkpoint)
  allow-lists, with `torch.serialization.add_safe_globals`, exactly the classes that s3prl's
  own checkpoints pickle (`argparse.Namespace` for `Args`). Under torch >= 2.6 `torch.load`
  defaults to `weights_only=True`, so without this `run_downstream -m evaluate -e <ckpt>` and
  resume fail whatever the upstream. The hook is the place for this fix (rather than only the
  wrapper `python -m usad2.bin.s3prl_runner`) because it makes the *unmodified* command work,
  keeps loading in weights-only mode (no arbitrary unpickling), and touches only processes that
  run s3prl's legacy runner.

Calling `install()` again is harmless; when a watched module is already imported (the `.pth`
file missing, usad2 imported late) `install()` patches it in place.
"""
import importlib.abc
import os
import sys
import sysconfig

PTH_NAME = "usad2_s3prl.pth"
# The line site.py executes at start-up: harmless when usad2 was uninstalled without the file.
PTH_LINE = ('import importlib.util as _u; _u.find_spec("usad2") is not None and '
            '__import__("usad2.s3prl_upstream.hook")\n')
HUB_ENTRIES = ("usad2", "usad2_local")


def _patch_hub(module):
    """Give s3prl's hub module the usad2 entries (and nothing else)."""
    from usad2.s3prl_upstream import hubconf

    for name in HUB_ENTRIES:
        setattr(module, name, getattr(hubconf, name))


def _allow_runner_checkpoints(module):
    """Let weights-only `torch.load` read s3prl runner checkpoints (they pickle a Namespace)."""
    import argparse

    import torch

    torch.serialization.add_safe_globals([argparse.Namespace])


PATCHES = {
    "s3prl.hub": _patch_hub,
    "s3prl.downstream.runner": _allow_runner_checkpoints,
}


class _PatchingLoader(importlib.abc.Loader):
    """Run the real loader, then the patch for this module; everything else is delegated."""

    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_code, get_source, is_package, ... for runpy and tools
        return getattr(self._loader, name)


class S3prlHubFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder that only reacts to the modules named in PATCHES."""

    def find_spec(self, fullname, path=None, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, S3prlHubFinder):
                continue
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def install():
    """Put the finder first on sys.meta_path (once) and patch modules imported before now."""
    if not any(isinstance(f, S3prlHubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, S3prlHubFinder())
    for name, patch in PATCHES.items():  # both patches are idempotent
        module = sys.modules.get(name)
        if module is not None:
            patch(module)


def is_registered():
    """Whether `import s3prl.hub` in this process exposes the usad2 entries."""
    import s3prl.hub as hub

    return all(hasattr(hub, n) for n in HUB_ENTRIES)


def default_site_dir():
    """The site-packages directory of the running interpreter (where pip puts usad2)."""
    return sysconfig.get_paths()["purelib"]


def install_pth(site_dir=None):
    """Write `usad2_s3prl.pth` into `site_dir` (default: this interpreter's site-packages).

    Returns the path written. The file is what makes the hook active in every new process.
    """
    from usad2.utils.atomic import atomic_write_text

    path = os.path.join(site_dir or default_site_dir(), PTH_NAME)
    atomic_write_text(path, PTH_LINE)
    os.chmod(path, 0o644)  # readable by every user of a shared environment
    return path


def installed_pth(site_dir=None):
    """The path of the installed `.pth` file, or None when it is not there."""
    path = os.path.join(site_dir or default_site_dir(), PTH_NAME)
    return path if os.path.isfile(path) else None


install()
