#!/usr/bin/env python3
"""Writes tests/fuzz/corpus/fuzz_gguf/: small GGUF files, each valid or one
rule of spec/gguf.md §1.1 away from valid (run by hand from the repository
root; the outputs are committed, so no Python is needed to test)."""
import struct
from pathlib import Path

OUT = Path("tests/fuzz/corpus/fuzz_gguf")


def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, t, payload):
    return s(key) + struct.pack("<I", t) + payload


def info(name, ne, typ, off):
    return s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) + struct.pack("<II", typ, 0)[:4] + struct.pack("<Q", off)


def gguf(kvs, infos, data, version=3, align=32, pad_byte=0):
    h = b"GGUF" + struct.pack("<IQQ", version, len(infos), len(kvs)) + b"".join(kvs) + b"".join(infos)
    if infos:
        h += bytes([pad_byte]) * ((-len(h)) % align)
    return h + data


ARCH = kv("general.architecture", 8, s("llama"))
TOK = kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2) + s("a") + s("bc"))
F32 = info("w", [4, 2], 0, 0)
Q8 = info("q", [32, 1], 8, 0)
seeds = {
    "valid-no-tensors": gguf([ARCH, TOK], [], b""),
    "valid-f32": gguf([ARCH], [F32], bytes(32)),
    "valid-two": gguf([ARCH, kv("x.n", 4, struct.pack("<I", 7))], [info("a", [3], 0, 0), info("b", [32, 2], 8, 32)], bytes(32 + 96)),
    "valid-q8": gguf([ARCH], [Q8], bytes(64)),
    "valid-align64": gguf([kv("general.alignment", 4, struct.pack("<I", 64))], [F32], bytes(64), align=64),
    "bad-magic": b"GGUX" + gguf([ARCH], [], b"")[4:],
    "version2": gguf([ARCH], [], b"", version=2),
    "big-endian": b"GGUF" + struct.pack(">I", 3) + gguf([ARCH], [], b"")[8:],
    "truncated-key": gguf([ARCH], [], b"")[:30],
    "string-too-long": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40) + b"k",
    "dup-key": gguf([ARCH, ARCH], [], b""),
    "empty-key": gguf([kv("", 4, bytes(4))], [], b""),
    "bad-vtype": gguf([kv("k", 13, bytes(4))], [], b""),
    "nested-array": gguf([kv("k", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 0))], [], b""),
    "align-type": gguf([kv("general.alignment", 5, struct.pack("<i", 32))], [F32], bytes(32)),
    "align-not-pow2": gguf([kv("general.alignment", 4, struct.pack("<I", 24))], [F32], bytes(32)),
    "dup-tensor": gguf([ARCH], [F32, info("w", [4, 2], 0, 32)], bytes(64)),
    "ndims5": gguf([ARCH], [info("w", [1, 1, 1, 1, 1], 0, 0)], bytes(32)),
    "ne0-not-block": gguf([ARCH], [info("q", [16, 2], 8, 0)], bytes(64)),
    "unknown-type": gguf([ARCH], [info("w", [4], 4, 0)], bytes(32)),
    "misaligned-offset": gguf([ARCH], [info("a", [3], 0, 0), info("b", [3], 0, 12)], bytes(64)),
    "gap": gguf([ARCH], [info("a", [3], 0, 0), info("b", [3], 0, 64)], bytes(96)),
    "ne-overflow": gguf([ARCH], [info("w", [1 << 40, 1 << 40], 0, 0)], bytes(32)),
    "negative-ne": gguf([ARCH], [info("w", [(1 << 64) - 1], 0, 0)], bytes(32)),
    "data-short": gguf([ARCH], [F32], bytes(16)),
    "nonzero-padding": gguf([ARCH], [F32], bytes(32), pad_byte=1),
    "nonzero-data-padding": gguf([ARCH], [info("a", [3], 0, 0)], bytes(12) + b"\1" + bytes(19)),
    "long-name": gguf([ARCH], [info("n" * 64, [4], 0, 0)], bytes(32)),
    "huge-counts": b"GGUF" + struct.pack("<IQQ", 3, 1 << 62, 1 << 62),
}
OUT.mkdir(parents=True, exist_ok=True)
for name, data in seeds.items():
    (OUT / f"{name}.gguf").write_bytes(data)
