"""The bytes stored in the artifact cache for one compiled kernel: a JSON header and named binary parts."""
from __future__ import annotations

import json
import struct

MAGIC = b"EMBK1"


class ArtifactError(ValueError):
    pass


def pack(parts: dict[str, "bytes | str"], meta: dict) -> bytes:
    blobs = [(k, v.encode() if isinstance(v, str) else bytes(v), isinstance(v, str)) for k, v in parts.items()]
    header = {"meta": meta, "parts": [[k, len(b), is_text] for k, b, is_text in blobs]}
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack("<Q", len(head)) + head + b"".join(b for _, b, _ in blobs)


def unpack(data: bytes) -> tuple[dict[str, "bytes | str"], dict]:
    try:
        if not data.startswith(MAGIC):
            raise ArtifactError("bad magic")
        (n,) = struct.unpack_from("<Q", data, len(MAGIC))
        start = len(MAGIC) + 8
        header = json.loads(data[start:start + n])
        pos = start + n
        parts: dict[str, bytes | str] = {}
        for name, size, is_text in header["parts"]:
            blob = data[pos:pos + size]
            if len(blob) != size:
                raise ArtifactError("truncated part")
            parts[name] = blob.decode() if is_text else blob
            pos += size
        return parts, header["meta"]
    except (struct.error, ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"unreadable compiled artifact: {err}") from None
