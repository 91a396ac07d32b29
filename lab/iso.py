"""A bootable ISO of the lab guest, for tests that install from install media: isolinux boots the same
kernel and initramfs as the lab's guests (lab.images), with a command line of its own, so a guest that
booted from the ISO tells so through its agent (its host name, see lab/guest/rc).

isolinux comes from Debian's packages, unpacked like the kernel; xorriso (lab/DEBIAN_PACKAGES) writes the
El Torito image. Built once into the images cache, again when the guest images or this recipe change.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from lab.images import _download, _extract, ensure_guest_images
from lab.paths import IMAGES_CACHE_DIR
from lab.process import file_lock, run

ISO_HOSTNAME = "booted-from-iso"
ISOLINUX_PACKAGES = ("isolinux", "syslinux-common")  # isolinux.bin; ldlinux.c32, which it loads
ISOLINUX_CFG = f"""DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=tty0 quiet vmportal.hostname={ISO_HOSTNAME}
"""


def ensure_install_iso() -> Path:
    """The lab guest as a bootable ISO, built first when missing or outdated."""
    images = ensure_guest_images()
    iso = IMAGES_CACHE_DIR / "guest.iso"
    stamp_path = IMAGES_CACHE_DIR / "guest-iso.json"
    with file_lock(IMAGES_CACHE_DIR.parent / "iso.lock"):
        digest = hashlib.sha256(Path(__file__).read_bytes())
        for image in (images.kernel, images.initrd):
            digest.update(image.read_bytes())
        recipe = digest.hexdigest()
        if iso.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()).get("recipe") == recipe:
            return iso
        with tempfile.TemporaryDirectory(prefix="iso-", dir=IMAGES_CACHE_DIR.parent) as tmp:
            work = Path(tmp)
            packages = work / "packages"
            for package in ISOLINUX_PACKAGES:
                _extract(_download(package, work), packages)
            tree = work / "tree"
            (tree / "isolinux").mkdir(parents=True)
            (tree / "isolinux" / "isolinux.bin").write_bytes((packages / "usr/lib/ISOLINUX/isolinux.bin").read_bytes())
            (tree / "isolinux" / "ldlinux.c32").write_bytes(
                (packages / "usr/lib/syslinux/modules/bios/ldlinux.c32").read_bytes())
            (tree / "isolinux" / "isolinux.cfg").write_text(ISOLINUX_CFG)
            (tree / "vmlinuz").write_bytes(images.kernel.read_bytes())
            (tree / "initrd.img").write_bytes(images.initrd.read_bytes())
            built = work / "guest.iso"
            run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(built), "-V", "VMPORTAL_GUEST",
                 "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                 "-boot-info-table", str(tree)])
            built.chmod(0o644)
            built.replace(iso)
        stamp_path.write_text(json.dumps({"recipe": recipe}))
    return iso
