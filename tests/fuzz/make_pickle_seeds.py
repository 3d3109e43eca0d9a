#!/usr/bin/env python3
"""make_pickle_seeds.py — the seed corpus of fuzz_pickle (tests/fuzz/corpus/fuzz_pickle).

usage: python3 tests/fuzz/make_pickle_seeds.py   (from the repository root;
Python's standard library only)

valid-*: the torch.save fixtures of tests/e2e/fixtures/torchbin (zip files)
and their data.pkl streams alone. hostile-*: pickles that a state-dict reader
must refuse (tests/unit/test_torchbin.c checks that every one is refused):
globals that run code (os.system, builtins.eval, subprocess, STACK_GLOBAL),
REDUCE of callables that are not allowed, huge memo indices, recursive
structures, truncated streams and zip wrappers of the same.
"""
import collections
import io
import os
import pickle
import struct
import zipfile

OUT = "tests/fuzz/corpus/fuzz_pickle"
FX = "tests/e2e/fixtures/torchbin"


class Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def zipped(name, pkl):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
    return b.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    seeds = {}
    views = open(os.path.join(FX, "views.bin"), "rb").read()
    seeds["valid-views.bin"] = views
    seeds["valid-shard.bin"] = open(os.path.join(FX, "ft", "pytorch_model-00002-of-00002.bin"), "rb").read()
    with zipfile.ZipFile(os.path.join(FX, "views.bin")) as z:
        pkl = z.read("views/data.pkl")
    seeds["valid-views.pkl"] = pkl

    h = {}
    h["global-os-system"] = pickle.dumps(Call(os.system, "echo pwned"), protocol=2)
    h["global-eval"] = pickle.dumps(Call(eval, "print(1)"), protocol=2)
    h["global-exec-proto4"] = pickle.dumps(Call(exec, "import os"), protocol=4)
    h["global-subprocess"] = b"\x80\x02csubprocess\nPopen\n(X\x02\x00\x00\x00lstR."
    h["stack-global-system"] = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x02id\x85R."
    h["in-state-dict"] = pickle.dumps(collections.OrderedDict(w=Call(os.system, "id")), protocol=2)
    h["torch-load-from-bytes"] = b"\x80\x02ctorch\n_load_from_bytes\nC\x01x\x85R."
    h["torch-utils-other"] = b"\x80\x02ctorch._utils\n_rebuild_device_tensor_from_numpy\n)R."
    h["reduce-storage-class"] = b"\x80\x02ctorch\nFloatStorage\n)R."
    h["reduce-dtype"] = b"\x80\x02ctorch\nfloat32\n)R."
    h["reduce-non-global"] = b"\x80\x02X\x04\x00\x00\x00evil)R."
    h["reduce-odict-args"] = b"\x80\x02ccollections\nOrderedDict\n]\x85R."
    h["build-on-list"] = b"\x80\x02]X\x01\x00\x00\x00ab."
    h["inst-opcode"] = b"\x80\x02(ios\nsystem\nX\x02\x00\x00\x00id."
    h["obj-opcode"] = b"\x80\x02(cos\nsystem\nX\x02\x00\x00\x00ido."
    h["newobj"] = b"\x80\x02cbuiltins\nobject\n)\x81."
    h["ext1"] = b"\x80\x02\x82\x01."
    h["text-persid"] = b"\x80\x02P0\n."
    h["memo-huge-put"] = b"\x80\x02}r\xff\xff\xff\xff."
    h["memo-huge-get"] = b"\x80\x02}j\xff\xff\xff\xff."
    h["memo-skip"] = b"\x80\x02}q\x05."
    h["memo-get-missing"] = b"\x80\x02h\x00."
    h["recursive-dict"] = b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."
    h["recursive-list"] = b"\x80\x02]q\x00h\x00a}X\x01\x00\x00\x00ah\x00s."
    h["recursive-tuple-memo"] = b"\x80\x02(h\x00t."
    h["marks-deep"] = b"\x80\x02" + b"(" * 50000 + b"."
    h["stack-deep"] = b"\x80\x02" + b"N" * 50000 + b"."
    h["persid-path"] = (b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
                        b"ctorch\nFloatStorage\nX\x10\x00\x00\x00../../etc/passwdX\x03\x00\x00\x00cpuK\x01tQK\x00K\x01"
                        b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")
    h["tensor-past-storage"] = (b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
                                b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x05K\x04"
                                b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")
    h["tensor-huge-shape"] = (b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
                              b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00"
                              b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x86"
                              b"K\x01K\x01\x86\x89ccollections\nOrderedDict\n)RtRs.")
    h["v3-typed-storage"] = (b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v3\n((X\x07\x00\x00\x00storage"
                             b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x01"
                             b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rctorch\nbfloat16\ntRs.")
    h["v3-dtype-not-dtype"] = (b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v3\n((X\x07\x00\x00\x00storage"
                               b"ctorch.storage\nUntypedStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x01"
                               b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RK\x05tRs.")
    h["v3-odd-bytes"] = (b"\x80\x02}X\x01\x00\x00\x00actorch._utils\n_rebuild_tensor_v3\n((X\x07\x00\x00\x00storage"
                         b"ctorch.storage\nUntypedStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x03tQK\x00K\x01"
                         b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rctorch\nbfloat16\ntRs.")
    h["string-past-end"] = b"\x80\x02X\xff\xff\xff\x7fabc"
    h["string8-past-end"] = b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xffabc"
    h["long-too-wide"] = b"\x80\x02\x8a\x09" + b"\x01" * 9 + b"."
    h["no-stop"] = b"\x80\x02}"
    h["proto-99"] = b"\x80\x63}."
    h["not-a-dict"] = b"\x80\x02]."
    h["two-values"] = b"\x80\x02}}."
    for i, cut in enumerate([1, 2, 3, 30, 100, len(pkl) // 2, len(pkl) - 1]):
        h["truncated-pkl-%02d" % i] = pkl[:cut]
    for name, data in list(h.items()):
        seeds["hostile-" + name + ".pkl"] = data
    seeds["hostile-zip-os-system.bin"] = zipped("x", h["global-os-system"])
    seeds["hostile-zip-eval.bin"] = zipped("x", h["in-state-dict"])
    seeds["hostile-zip-recursive.bin"] = zipped("x", h["recursive-dict"])
    for i, cut in enumerate([4, 30, len(views) // 2, len(views) - 23, len(views) - 1]):
        seeds["hostile-truncated-zip-%02d.bin" % i] = views[:cut]
    # a storage entry shorter than the pickle says: the zip's last data entry cut by one byte is
    # not a valid zip any more, so shrink the size the pickle claims instead (numel 24 -> 25)
    seeds["hostile-zip-storage-short.bin"] = views.replace(b"K\x18tq\x08Q", b"K\x19tq\x08Q", 1)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print("%d seeds (%d hostile) in %s" % (len(seeds), sum(k.startswith("hostile-") for k in seeds), OUT))


if __name__ == "__main__":
    main()
