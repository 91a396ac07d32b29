"""Build the lab guests' kernel and initramfs from Debian packages, once, into a cache.

The guest is a Debian cloud kernel booted directly (no disk) with an initramfs holding busybox,
the QEMU guest agent and the virtio modules it needs. The result lives at a fixed path readable by
every lab host, because a migration target opens the same files again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import re
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lab.paths import IMAGES_CACHE_DIR
from lab.process import LabError, file_lock, run

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
AGENT_PACKAGE = "qemu-guest-agent"
BUSYBOX = Path("/bin/busybox")  # from busybox-static: no libraries needed

# What the guest loads; their dependencies are read from the modules themselves.
GUEST_MODULES = (
    "virtio_pci",
    "virtio_console",  # guest agent channel
    "virtio_net",
    "virtio_blk",  # disks, if a VM has any, show up as /dev/vd*
    "virtio_balloon",
    "virtio_scsi",  # a CD-ROM drive on a virtio-scsi controller ...
    "sr_mod",  # ... shows up as /dev/sr0 (with cdrom and scsi_mod, loaded as its dependencies)
    "button",  # ACPI power button ...
    "evdev",  # ... delivered to acpid as an input event
)

# Files from lab/guest/ and where they go in the guest, with their mode.
GUEST_FILES = {
    "inittab": ("etc/inittab", 0o644),
    "rc": ("etc/rc", 0o755),
    "services/qemu-ga": ("etc/services/qemu-ga", 0o755),
    "services/dhcp": ("etc/services/dhcp", 0o755),
    "services/acpid": ("etc/services/acpid", 0o755),
    "udhcpc.script": ("etc/udhcpc.script", 0o755),
    "power-button": ("etc/acpi/PWRF/00000080", 0o755),
    "shutdown": ("sbin/shutdown", 0o755),
    "issue": ("etc/issue", 0o644),
    "os-release": ("etc/os-release", 0o644),
    "passwd": ("etc/passwd", 0o644),
    "group": ("etc/group", 0o644),
}


@dataclass(frozen=True)
class GuestImages:
    kernel: Path
    initrd: Path


def ensure_guest_images() -> GuestImages:
    """Return the guest kernel and initramfs, building them first if missing or outdated."""
    images = GuestImages(kernel=IMAGES_CACHE_DIR / "vmlinuz", initrd=IMAGES_CACHE_DIR / "initrd.img")
    stamp_path = IMAGES_CACHE_DIR / "build.json"
    IMAGES_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    IMAGES_CACHE_DIR.chmod(0o755)
    with file_lock(IMAGES_CACHE_DIR.parent / "images.lock"):
        recipe = _recipe_digest()
        if (
            images.kernel.exists()
            and images.initrd.exists()
            and stamp_path.exists()
            and json.loads(stamp_path.read_text()).get("recipe") == recipe
        ):
            return images
        with tempfile.TemporaryDirectory(prefix="build-", dir=IMAGES_CACHE_DIR.parent) as tmp:
            work = Path(tmp)
            kernel_package = _kernel_package()
            kernel_root = _extract(_download(kernel_package, work), work / "kernel")
            agent_root = _extract(_download(AGENT_PACKAGE, work), work / "agent")
            _install(next((kernel_root / "boot").glob("vmlinuz-*")), images.kernel)
            _install_bytes(_build_initramfs(kernel_root, agent_root), images.initrd)
        stamp_path.write_text(json.dumps({"recipe": recipe, "kernel_package": kernel_package}))
        return images


def _recipe_digest() -> str:
    """Identify what goes into the images, so a change to this recipe rebuilds them."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for source in sorted(GUEST_FILES):
        digest.update(_guest_file(source))
    return digest.hexdigest()


def _guest_file(source: str) -> bytes:
    return resources.files("lab").joinpath("guest", source).read_bytes()


def _kernel_package() -> str:
    """The versioned kernel package the metapackage currently points to."""
    output = _apt(["apt-cache", "depends", "--no-recommends", "--no-suggests", KERNEL_METAPACKAGE])
    match = re.search(r"Depends: (linux-image-\S+-cloud-amd64)", output)
    if not match:
        raise LabError(f"cannot tell which kernel {KERNEL_METAPACKAGE} depends on:\n{output}")
    return match.group(1)


def _download(package: str, directory: Path) -> Path:
    """Fetch a package's .deb without installing it."""
    _apt(["apt-get", "download", package], cwd=directory)
    debs = list(directory.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise LabError(f"apt-get download {package} left {debs!r} in {directory}")
    return debs[0]


def _apt(command: list[str], cwd: Path | None = None) -> str:
    """Run an apt command, refreshing the package lists once if it fails on stale ones."""
    try:
        return run(command, cwd=cwd)
    except LabError:
        run(["apt-get", "update"])
        return run(command, cwd=cwd)


def _extract(deb: Path, root: Path) -> Path:
    run(["dpkg-deb", "--extract", str(deb), str(root)])
    return root


def _install(source: Path, target: Path) -> None:
    _install_bytes(source.read_bytes(), target)


def _install_bytes(data: bytes, target: Path) -> None:
    """Replace target atomically, world-readable: guests on every host read it."""
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.chmod(0o644)
    partial.replace(target)


def _build_initramfs(kernel_root: Path, agent_root: Path) -> bytes:
    archive = _Cpio()
    for directory in ("dev", "proc", "sys", "run", "tmp", "root", "var/log", "lib/modules"):
        archive.add_directory(directory)
    archive.add_symlink("var/run", "/run")
    # The kernel opens the console before init runs, so it must exist before devtmpfs is mounted.
    archive.add_device("dev/console", major=5, minor=1)

    archive.add_file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    for applet in _busybox_applets():
        if applet != "bin/busybox":
            archive.add_symlink(applet, "/bin/busybox")
    archive.add_symlink("init", "/bin/busybox")

    agent = agent_root / "usr/sbin/qemu-ga"
    archive.add_file("usr/sbin/qemu-ga", agent.read_bytes(), 0o755)
    for library in _shared_libraries(agent):
        archive.add_file(str(library).lstrip("/"), library.read_bytes(), 0o755)

    modules = _ModuleTree(kernel_root)
    load_order = modules.load_order(GUEST_MODULES)
    for module in load_order:
        archive.add_file(f"lib/modules/{module}.ko", modules.read(module), 0o644)
    archive.add_file("lib/modules/load-order", "".join(f"{m}\n" for m in load_order).encode(), 0o644)

    for source, (target, mode) in GUEST_FILES.items():
        archive.add_file(target, _guest_file(source), mode)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def _busybox_applets() -> list[str]:
    """Paths of the applets relative to /, e.g. "sbin/init"."""
    return [path.lstrip("/") for path in run([str(BUSYBOX), "--list-full"]).split()]


def _shared_libraries(binary: Path) -> list[Path]:
    """Every library the dynamic loader maps for binary, including the loader itself."""
    libraries = []
    for line in run(["ldd", str(binary)]).splitlines():
        if "not found" in line:
            raise LabError(f"{binary} needs a library this machine lacks: {line.strip()}")
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            libraries.append(Path(match.group(1)))
    return libraries


class _ModuleTree:
    """The modules shipped in an extracted kernel package."""

    def __init__(self, kernel_root: Path) -> None:
        (modules_dir,) = (kernel_root / "lib/modules").iterdir()
        self._files = {_module_name(path): path for path in modules_dir.rglob("*.ko*") if path.is_file()}

    def read(self, module: str) -> bytes:
        path = self._files[module]
        data = path.read_bytes()
        # busybox insmod loads plain modules only; Debian 12 ships them plain, later releases xz.
        return lzma.decompress(data) if path.suffix == ".xz" else data

    def load_order(self, wanted: Iterable[str]) -> list[str]:
        """wanted and their dependencies, each after the modules it depends on."""
        order: list[str] = []

        def visit(module: str) -> None:
            if module in order:
                return
            if module not in self._files:
                raise LabError(f"the guest kernel has no module {module}")
            for dependency in self._dependencies(module):
                visit(dependency)
            order.append(module)

        for module in wanted:
            visit(module)
        return order

    def _dependencies(self, module: str) -> list[str]:
        match = re.search(rb"\0depends=([^\0]*)\0", self.read(module))
        names = match.group(1).decode().split(",") if match else []
        # Built-in modules are listed too but have no file: they need no loading.
        return [name for name in names if name and name in self._files]


def _module_name(path: Path) -> str:
    name = path.name.split(".ko")[0]
    return name.replace("-", "_")


class _Cpio:
    """A "newc" cpio archive, the format the kernel unpacks as initramfs.

    Written here rather than with cpio(1) so that owners, modes and device nodes are exact without
    creating them on the build machine.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._directories: set[str] = set()
        self._next_inode = 1

    def add_directory(self, path: str) -> None:
        self._add_parents(path)
        if path not in self._directories:
            self._entry(path, stat.S_IFDIR | 0o755, b"")

    def add_file(self, path: str, data: bytes, mode: int) -> None:
        self._add_parents(path)
        self._entry(path, stat.S_IFREG | mode, data)

    def add_symlink(self, path: str, target: str) -> None:
        self._add_parents(path)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def add_device(self, path: str, *, major: int, minor: int) -> None:
        self._add_parents(path)
        self._entry(path, stat.S_IFCHR | 0o600, b"", rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"", inode=0)
        return b"".join(self._chunks)

    def _add_parents(self, path: str) -> None:
        """The kernel creates nothing implicitly: every directory needs its own entry first."""
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in self._directories:
                self._entry(parent, stat.S_IFDIR | 0o755, b"")

    def _entry(
        self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0), inode: int | None = None
    ) -> None:
        if stat.S_ISDIR(mode):
            self._directories.add(name)
        if inode is None:
            inode, self._next_inode = self._next_inode, self._next_inode + 1
        encoded_name = name.encode() + b"\0"
        fields = (inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded_name), 0)
        header = b"070701" + b"".join(b"%08X" % field for field in fields)
        self._chunks += [header, encoded_name, _padding(len(header) + len(encoded_name))]
        self._chunks += [data, _padding(len(data))]


def _padding(length: int) -> bytes:
    return b"\0" * (-length % 4)
