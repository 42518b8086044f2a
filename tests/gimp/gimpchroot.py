#!/usr/bin/env python3
"""Build and use a Debian 13 (trixie) chroot that holds GIMP 3, for tests and screenshots.

Debian 12 ships GIMP 2.10 only; trixie ships GIMP 3.0.x, which runs headless (``gimp-console-3.0``)
and, under Xvfb, with its full GUI. The chroot is built once into ``.gimp-chroot/`` (git-ignored)
and reused: a finished build leaves the marker file ``.nst-chroot-ready`` behind.

Commands run inside the chroot in a private mount namespace (``unshare -m``): the bind mounts
(the repository, the engine's virtual environment and its base Python, read-only) and /proc
vanish with the process, so no mount is ever left behind, even if a test is killed. Root only
(which CI is).

    python tests/gimp/gimpchroot.py build           # build (or reuse) the chroot
    python tests/gimp/gimpchroot.py run -- CMD...   # run CMD inside, with the binds
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / ".gimp-chroot"
READY = ".nst-chroot-ready"
SUITE = "trixie"
PACKAGES = [
    "gimp", "python3-gi", "gir1.2-gimp-3.0",  # GIMP 3 and its Python plug-in support
    "xvfb", "xauth", "imagemagick", "fonts-dejavu-core", "x11-utils", "xdotool",  # screenshots
]


def in_ci(environ: Mapping[str, str]) -> bool:
    """Is this a CI run? ``CI`` set to true/1/yes, as GitHub Actions, GitLab CI and most runners do."""
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_prerequisite(platform: str, euid: int | None, unshare: str | None) -> str | None:
    """What this machine lacks to build and run the chroot, or None."""
    if platform != "linux":
        return f"the GIMP tests need Linux (a Debian chroot); this is {platform}"
    if euid != 0:
        return ("the GIMP tests need root (debootstrap, chroot, mount namespaces); run them as root: "
                "sudo .venv/bin/python -m pytest tests/test_gimp.py")
    if unshare is None:
        return "the GIMP tests need `unshare` (util-linux) on the PATH"
    return None


def gimp_tests_verdict(environ: Mapping[str, str], platform: str, euid: int | None,
                       unshare: str | None) -> tuple[str, str] | None:
    """None: run the GIMP tests; ("skip", why) or ("fail", why) otherwise.

    In CI (`in_ci`) a missing prerequisite fails: a skip there would hide a broken plug-in.
    Elsewhere it skips, saying why. ``NST_SKIP_GIMP=1`` always skips (a deliberate choice)."""
    if environ.get("NST_SKIP_GIMP") == "1":
        return ("skip", "NST_SKIP_GIMP=1")
    why = missing_prerequisite(platform, euid, unshare)
    if why is None:
        return None
    if in_ci(environ):
        return ("fail", f"{why} (CI={environ.get('CI')}: the GIMP tests are mandatory in CI)")
    return ("skip", f"{why} (with CI=true this is a failure)")


def log(msg: str) -> None:
    print(f"[gimpchroot] {msg}", file=sys.stderr, flush=True)


def chroot_root() -> Path:
    return Path(os.environ.get("NST_GIMP_CHROOT", DEFAULT_ROOT)).resolve()


def is_ready(root: Path | None = None) -> bool:
    root = root or chroot_root()
    return (root / READY).is_file() and (root / "usr/bin/gimp-console-3.0").exists()


def _mirror() -> str:
    """The Debian mirror the host already uses (deb822 .sources or a classic sources.list)."""
    if os.environ.get("NST_DEBIAN_MIRROR"):
        return os.environ["NST_DEBIAN_MIRROR"]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for line in Path(path).read_text().splitlines():
            m = re.match(r"\s*URIs:\s*(\S+)", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if os.path.exists(path):
            for line in Path(path).read_text().splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
                if m and "security" not in m.group(1):
                    return m.group(1)
    return "http://deb.debian.org/debian"


def _mounted_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    with open("/proc/self/mounts") as fh:
        return [ln.split()[1] for ln in fh if ln.split()[1].startswith(prefix)]


def build(root: Path | None = None, *, force: bool = False) -> Path:
    """Build the chroot unless a finished one is there. Returns its path. Needs root and network."""
    root = root or chroot_root()
    if is_ready(root) and not force:
        return root
    if os.geteuid() != 0:
        raise RuntimeError("building the GIMP 3 chroot needs root (debootstrap, chroot, mount)")
    t0 = time.monotonic()
    if root.exists() and not (root / "usr/bin/apt-get").exists():
        # A debootstrap that died half-way: start over (never with anything mounted inside).
        if _mounted_under(root):
            raise RuntimeError(f"refusing to remove {root}: mounts inside it: {_mounted_under(root)}")
        shutil.rmtree(root)
    if not (root / "usr/bin/apt-get").exists():
        if not shutil.which("debootstrap"):
            log("installing debootstrap on the host")
            subprocess.run(["apt-get", "update", "-q"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True)
        mirror = _mirror()
        log(f"debootstrap {SUITE} from {mirror} into {root}")
        subprocess.run(
            ["unshare", "-m", "--propagation", "private",
             "debootstrap", "--variant=minbase", SUITE, str(root), mirror],
            check=True,
        )
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    # No daemons may start inside the chroot during installation.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    log("apt-get install " + " ".join(PACKAGES))
    script = (
        "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
        "apt-get install -y -q --no-install-recommends " + " ".join(PACKAGES) + " && apt-get clean"
    )
    run(["sh", "-c", script], root=root, binds=False, check=True)
    (root / READY).write_text(f"built {time.ctime()} in {time.monotonic() - t0:.0f} s\n")
    log(f"chroot ready in {time.monotonic() - t0:.0f} s")
    return root


_SYSTEM = ("/", "/usr", "/usr/local", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var", "/opt", "/root",
           "/home", "/tmp", "/usr/bin", "/usr/lib", "/usr/local/bin", "/usr/local/lib")


def _bindable(path: str) -> bool:
    """Whole folders we may bind over the chroot's: never its system folders (/usr, /lib, ...)."""
    p = os.path.normpath(path)
    if p in _SYSTEM or p.startswith(("/proc", "/sys", "/dev")):
        return False
    return not (p.startswith("/usr/") and not p.startswith("/usr/local/"))


def default_binds() -> list[str]:
    """Host paths to bind (read-only) at the same path inside: the repo and the engine's Python
    (this interpreter's venv and its base installation).

    A base Python inside /usr (a distribution's python3.X) cannot be bound as a whole; then just
    its interpreter and its ``lib/python3.X`` are, which the chroot (Debian 13, Python 3.13)
    lacks for any other version; `_wrap` skips whatever the chroot already has.
    """
    paths = {str(REPO), sys.prefix, str(Path(sys.executable).resolve().parents[1])}
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for base in {sys.base_prefix, str(Path(getattr(sys, "_base_executable", sys.executable)).resolve().parents[1])}:
        if _bindable(base):
            paths.add(base)
        else:
            paths.add(str(Path(getattr(sys, "_base_executable", sys.executable)).resolve()))
            for lib in (Path(base) / "lib" / ver, Path(base) / "local" / "lib" / ver):
                if lib.is_dir():
                    paths.add(str(lib))
    venv = Path(os.environ.get("NST_ENGINE_VENV", REPO / ".venv"))
    if venv.exists():
        paths.add(str(venv.resolve()))
        cfg = venv / "pyvenv.cfg"
        if cfg.exists():
            for line in cfg.read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and _bindable(str(Path(value.strip()).resolve().parent)):
                    paths.add(str(Path(value.strip()).resolve().parent))
    paths = {os.path.normpath(p) for p in paths if p and os.path.exists(p)}
    # Keep only the outermost of nested paths; system folders themselves never.
    out: list[str] = []
    for p in sorted(paths, key=len):
        if p in _SYSTEM:
            continue
        if not any(p == q or p.startswith(q + "/") for q in out):
            out.append(p)
    return out


def _placeholder(path: Path) -> bool:
    """An empty file or folder: a mount point an earlier run created."""
    try:
        return (path.is_file() and path.stat().st_size == 0) or (path.is_dir() and not any(path.iterdir()))
    except OSError:
        return False


def _wrap(cmd: list[str], root: Path, binds: bool, extra_binds: list[tuple[str, str, bool]]) -> list[str]:
    """A shell command that sets up the mount namespace and chroots."""
    steps = ["set -e", f"mount -t proc proc {shlex.quote(str(root / 'proc'))}"]
    dev = root / "dev"
    steps.append(f"mount --rbind /dev {shlex.quote(str(dev))}")
    mounts: list[tuple[str, str, bool]] = []
    if binds:
        mounts += [(p, p, True) for p in default_binds()]
    mounts += extra_binds
    for src, dst, ro in mounts:
        target = root / dst.lstrip("/")
        if not _bindable(dst) and (target.is_symlink() or target.exists() and not _placeholder(target)):
            continue  # never shadow the chroot's own files (e.g. a /usr/bin/python3.X it has)
        if os.path.isdir(src):
            steps.append(f"mkdir -p {shlex.quote(str(target))}")
        else:
            steps.append(f"mkdir -p {shlex.quote(str(target.parent))} && touch {shlex.quote(str(target))}")
        steps.append(f"mount --bind {shlex.quote(src)} {shlex.quote(str(target))}")
        if ro:
            steps.append(f"mount -o remount,bind,ro {shlex.quote(str(target))}")
    steps.append("exec chroot " + shlex.quote(str(root)) + " " + " ".join(shlex.quote(c) for c in cmd))
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(steps)]


def run(cmd: list[str], *, root: Path | None = None, binds: bool = True,
        extra_binds: list[tuple[str, str, bool]] = (), check: bool = False,
        popen: bool = False, **kw):
    """Run ``cmd`` inside the chroot (subprocess.run, or Popen with popen=True)."""
    root = root or chroot_root()
    full = _wrap(cmd, root, binds, list(extra_binds))
    if popen:
        return subprocess.Popen(full, **kw)
    return subprocess.run(full, check=check, **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the chroot (reused when already built)")
    b.add_argument("--force", action="store_true", help="re-run the package installation")
    r = sub.add_parser("run", help="run a command inside the chroot")
    r.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("path", help="print the chroot's path and whether it is ready")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        print(build(force=args.force))
        return 0
    if args.cmd == "path":
        print(chroot_root(), "ready" if is_ready() else "missing")
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return run(command or ["bash"]).returncode


if __name__ == "__main__":
    sys.exit(main())
