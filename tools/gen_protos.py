"""Regenerate src/odkit/protos/*_pb2.py and *_pb2.pyi from the .proto files.

Usage: python tools/gen_protos.py [--check]

--check regenerates into a temporary folder and exits 1 if any committed file differs.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PROTO_DIR = SRC / "odkit" / "protos"


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{SRC}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *[str(p.relative_to(SRC)) for p in protos],
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return protos


def main() -> int:
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        produced = sorted((out / "odkit" / "protos").glob("*_pb2.py*"))
        if check:
            bad = []
            for f in produced:
                dst = PROTO_DIR / f.name
                if not dst.exists() or not filecmp.cmp(f, dst, shallow=False):
                    bad.append(f.name)
            committed = {p.name for p in PROTO_DIR.glob("*_pb2.py*")}
            bad += sorted(committed - {f.name for f in produced})
            if bad:
                print("stale generated protos: " + ", ".join(bad))
                return 1
            return 0
        for f in produced:
            shutil.copyfile(f, PROTO_DIR / f.name)
        print(f"generated {len(produced)} files in {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
