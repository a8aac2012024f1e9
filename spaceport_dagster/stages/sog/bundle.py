"""The two containers of a SOG bundle: a `.sog` ZIP (files at its root) and a folder with meta.json.

Writing: stored WebP entries, deflated meta.json, fixed timestamps (byte-identical output for identical
input), no archive comment (the engine reads the end record at exactly len - 22), no zip64.
Reading refuses what the engine would not read or what could hurt the reader: a comment or trailing bytes,
zip64, names with directories, absolute paths or '..', duplicate names, encryption, unknown compression,
and entries whose declared or actual size is too large.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

from .format import SogFormatError

EOCD = b"PK\x05\x06"
ZIP64_LOCATOR = b"PK\x06\x07"
ZIP64_EOCD = b"PK\x06\x06"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
MAX_ENTRIES = 64
DEFAULT_MAX_BYTES = 2 << 30  # uncompressed total a bundle may claim


def check_name(name: str) -> None:
    """A bundle file name must be a plain name at the root."""
    if not name or name in (".", "..") or any(c in name for c in "/\\:\0") or name.strip() != name:
        raise SogFormatError(f"bundle file name {name!r} is not a plain file name at the bundle root")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", allowZip64=False) as zf:
        for name, data in files.items():
            check_name(name)
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def write_zip(path: Path, files: dict[str, bytes]) -> int:
    data = zip_bytes(files)
    path.write_bytes(data)
    return len(data)


def write_folder(folder: Path, files: dict[str, bytes]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, data in files.items():
        check_name(name)
        (folder / name).write_bytes(data)
        total += len(data)
    return total


def _check_end_record(data: bytes) -> None:
    if len(data) < 22 or data[-22:-18] != EOCD:
        if EOCD in data[-(22 + 65535):]:
            raise SogFormatError("the .sog ZIP has an archive comment or trailing bytes; "
                                 "its end record must sit at exactly len - 22")
        raise SogFormatError("not a ZIP archive (no end-of-central-directory record)")
    disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment = struct.unpack("<HHHHIIH", data[-18:])
    if comment:
        raise SogFormatError("the .sog ZIP has an archive comment; the engine cannot read it")
    if len(data) >= 42 and data[-42:-38] == ZIP64_LOCATOR or 0xFFFF in (n_disk, n_total) \
            or 0xFFFFFFFF in (cd_size, cd_offset):
        raise SogFormatError("the .sog ZIP uses zip64, which the engine does not support")
    if disk or cd_disk or n_disk != n_total:
        raise SogFormatError("multi-disk ZIP archives are not supported")
    if n_total > MAX_ENTRIES:
        raise SogFormatError(f"the .sog ZIP has {n_total} entries; a bundle has at most {MAX_ENTRIES}")


def _has_zip64_extra(extra: bytes) -> bool:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack("<HH", extra[pos : pos + 4])
        if tag == 0x0001:
            return True
        pos += 4 + size
    return False


def _local_extra(data: bytes, info: zipfile.ZipInfo) -> bytes:
    """The extra field of an entry's local file header (zipfile only parses the central directory's)."""
    start = info.header_offset
    if start + 30 > len(data) or data[start : start + 4] != b"PK\x03\x04":
        raise SogFormatError(f"{info.filename}: local file header not found")
    name_len, extra_len = struct.unpack("<HH", data[start + 26 : start + 30])
    return data[start + 30 + name_len : start + 30 + name_len + extra_len]


def read_zip(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, bytes]:
    """The files of a .sog archive, after the safety checks in the module docstring."""
    _check_end_record(data)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise SogFormatError(f"the .sog ZIP is corrupt ({exc})") from None
    files: dict[str, bytes] = {}
    declared = 0
    with zf:
        infos = zf.infolist()
        for info in infos:
            check_name(info.filename)
            if sum(i.filename == info.filename for i in infos) > 1:
                raise SogFormatError(f"the .sog ZIP holds {info.filename!r} more than once")
            if info.flag_bits & 0x1:
                raise SogFormatError(f"{info.filename} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise SogFormatError(f"{info.filename} uses compression method {info.compress_type}; "
                                     "only stored and deflate are readable by the engine")
            if _has_zip64_extra(info.extra) or _has_zip64_extra(_local_extra(data, info)):
                raise SogFormatError(f"{info.filename} has a zip64 record, which the engine does not support")
            declared += info.file_size
            if declared > max_bytes:
                raise SogFormatError(f"the .sog ZIP declares more than {max_bytes} uncompressed bytes")
            try:
                with zf.open(info) as fh:
                    content = fh.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise SogFormatError(f"{info.filename} in the .sog ZIP is corrupt ({exc})") from None
            if len(content) != info.file_size:
                raise SogFormatError(f"{info.filename} holds {len(content)} bytes, the ZIP declares {info.file_size}")
            files[info.filename] = content
    return files


def read_folder(folder: Path, names: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, bytes]:
    """The named files of an unbundled SOG folder."""
    files: dict[str, bytes] = {}
    total = 0
    for name in names:
        check_name(name)
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise SogFormatError(f"bundle folder {folder} lacks {name} (named in meta.json)")
        total += path.stat().st_size
        if total > max_bytes:
            raise SogFormatError(f"bundle folder files exceed {max_bytes} bytes")
        files[name] = path.read_bytes()
    return files


def parse_meta(data: bytes) -> dict:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SogFormatError(f"meta.json is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SogFormatError("meta.json is not a JSON object")
    return meta
