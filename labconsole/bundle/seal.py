"""Sealing and verifying bundles: BagIt 1.0 (RFC 8493) written with hashlib.

bagit-python still writes BagIt-Version 0.97 and adds a dependency; the format is a handful of
text files, so we write it ourselves: `bagit.txt`, `manifest-sha256.txt` over every payload
file under `data/`, `bag-info.txt` with Payload-Oxum, and `tagmanifest-sha256.txt` over the tag
files. `verify()` names every file that was changed, added or removed after sealing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from labconsole import __version__, safefile

BAGIT_TXT = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
BAG_INFO = "bag-info.txt"
TAG_FILES = ("bagit.txt", BAG_INFO, MANIFEST)
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with safefile.open_regular(path) as fh:  # a FIFO or a device would block or never end
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def _encode_path(rel: str) -> str:
    # RFC 8493 2.1.3: percent-encode CR, LF and '%' in manifest paths.
    return rel.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _decode_path(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def payload_files(root: Path) -> list[str]:
    data = root / "data"
    out = []
    for dirpath, dirnames, filenames in os.walk(data):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_symlink() or not _regular(full):
                continue  # never follow links out of the bundle; a FIFO or a device is no file
            out.append(full.relative_to(root).as_posix())
    return out


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def payload_links(root: Path) -> list[str]:
    """Links under data/, and what is neither a file nor a folder (a FIFO, a device node):
    never part of a bundle (a reader following a link would read files the manifest does not
    cover, perhaps outside the bundle; reading a FIFO blocks)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root / "data"):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            if full.is_symlink() or (name in filenames and not _regular(full)):
                out.append(full.relative_to(root).as_posix())
    return sorted(out)


def is_sealed(root: Path) -> bool:
    return (root / "bagit.txt").exists() and (root / MANIFEST).exists() and (root / TAGMANIFEST).exists()


def seal(root: Path, info: dict[str, str] | None = None) -> dict[str, str]:
    """Write the BagIt tag files for `root/data`. Returns {relative path: sha256}."""
    root = Path(root)
    files = payload_files(root)
    digests = {rel: sha256_file(root / rel) for rel in files}
    octets = sum((root / rel).stat().st_size for rel in files)
    _atomic_write(root / "bagit.txt", BAGIT_TXT)
    _atomic_write(root / MANIFEST, "".join(f"{digests[rel]}  {_encode_path(rel)}\n" for rel in files))
    bag_info = {
        "Bag-Software-Agent": f"labconsole {_version()}",
        "Bagging-Date": _dt.date.today().isoformat(),
        "Payload-Oxum": f"{octets}.{len(files)}",
    }
    bag_info.update(info or {})
    lines = []
    for key, value in bag_info.items():
        value = str(value).replace("\n", " ").replace("\r", " ")
        lines.append(f"{key}: {value}\n")
    _atomic_write(root / BAG_INFO, "".join(lines))
    _atomic_write(root / TAGMANIFEST, "".join(f"{sha256_file(root / name)}  {name}\n" for name in TAG_FILES))
    return digests


@dataclass
class VerifyResult:
    sealed: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.sealed and not self.problems


def _read_manifest(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    text = safefile.read_text(path, "manifest", root=path.parent, errors="replace")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, rel = line.partition(" ")
        rel = rel.strip()
        if len(digest) != 64 or not rel:
            raise ValueError(f"{path}:{lineno}: malformed manifest line")
        out[_decode_path(rel)] = digest.lower()
    return out


def verify(root: Path) -> VerifyResult:
    """Check every payload and tag file against the manifests; name each difference."""
    root = Path(root)
    if not is_sealed(root):
        return VerifyResult(sealed=False, problems=["the bundle is not sealed (no BagIt manifests): was the run killed? `labconsole recover` seals it"])
    result = VerifyResult(sealed=True)
    try:
        tags = _read_manifest(root / TAGMANIFEST)
        manifest = _read_manifest(root / MANIFEST)
    except (OSError, ValueError) as exc:
        result.problems.append(str(exc))
        return result
    for name in TAG_FILES:
        p = root / name
        if not p.exists():
            result.problems.append(f"{name}: missing")
            continue
        try:
            changed = name in tags and sha256_file(p) != tags[name]
        except (OSError, safefile.FileRefused) as exc:
            result.problems.append(f"{name}: unreadable ({exc})")
            continue
        if changed:
            result.problems.append(f"{name}: changed after sealing (checksum differs)")
    on_disk = set(payload_files(root))
    listed = set(manifest)
    for rel in sorted(listed - on_disk):
        result.problems.append(f"{rel}: missing (listed in the manifest)")
    for rel in sorted(on_disk - listed):
        result.problems.append(f"{rel}: added after sealing (not in the manifest)")
    for rel in payload_links(root):
        what = "a link" if (root / rel).is_symlink() else "not a regular file"
        result.problems.append(f"{rel}: {what}, added after sealing (a bundle holds files only)")
    octets = 0
    for rel in sorted(listed & on_disk):
        result.files_checked += 1
        try:
            octets += (root / rel).stat().st_size
            digest = sha256_file(root / rel)
        except (OSError, safefile.FileRefused) as exc:
            result.problems.append(f"{rel}: unreadable ({exc})")
            continue
        if digest != manifest[rel]:
            result.problems.append(f"{rel}: changed after sealing (checksum differs)")
    try:
        info = read_bag_info(root)
        oxum = info.get("Payload-Oxum")
        if oxum and oxum != f"{octets}.{len(listed & on_disk)}" and not result.problems:
            result.problems.append(f"{BAG_INFO}: Payload-Oxum {oxum} does not match the payload ({octets}.{len(listed & on_disk)})")
    except OSError:
        pass
    return result


def read_bag_info(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    p = Path(root) / BAG_INFO
    if p.exists():
        try:
            text = safefile.read_text(p, "manifest", root=p.parent, errors="replace")
        except safefile.FileRefused:
            return out
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _version() -> str:
    return __version__
