"""Write src/odkit/protos/field_docs.json: the TF OD API's comment for every config field odkit's protos share.

odkit's .proto files are text-format copies without most of the TF OD API's comments; `odkit config explain`
shows a field's documentation from its odkit .proto comment, else from this file. Run once against a TF OD
API source tree (a documentation source only; TF is not needed, protoc comes from grpcio-tools):

    python tools/proto_field_docs.py /root/tfod-src/research

Keys are "<MessageName>.<field>" as in odkit.config.values.rule_key (nested: "Outer.Inner.field"); only
fields that exist in odkit's protos with the same name are written.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "odkit" / "protos" / "field_docs.json"


def _tf_comments(research: Path) -> dict[str, str]:
    from grpc_tools import protoc

    protos = sorted((research / "object_detection" / "protos").glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["protoc", f"-I{research}", "--include_source_info", f"--descriptor_set_out={out}",
                *[str(p.relative_to(research)) for p in protos]]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    docs: dict[str, str] = {}
    for f in fds.file:
        comments = {tuple(loc.path): " ".join((loc.leading_comments + " " + loc.trailing_comments).split())
                    for loc in f.source_code_info.location}
        for k, m in enumerate(f.message_type):
            _walk(m, (4, k), "", comments, docs)
    return docs


def _walk(msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str,
          comments: dict[tuple[int, ...], str], docs: dict[str, str]) -> None:
    for i, fld in enumerate(msg.field):
        text = comments.get((*path, 2, i), "")
        if text:
            docs[f"{prefix}{msg.name}.{fld.name}"] = text
    for j, nested in enumerate(msg.nested_type):
        _walk(nested, (*path, 3, j), f"{prefix}{msg.name}.", comments, docs)


def main() -> int:
    research = Path(sys.argv[1] if len(sys.argv) > 1 else "/root/tfod-src/research")
    sys.path.insert(0, str(ROOT / "src"))
    from google.protobuf import descriptor_pool

    import odkit.protos.pipeline_pb2  # noqa: F401 - registers every odkit message

    pool = descriptor_pool.Default()
    ours: dict[str, str] = {}
    for key, text in _tf_comments(research).items():
        owner, _, name = key.rpartition(".")
        try:
            desc = pool.FindMessageTypeByName("odkit.protos." + owner)
        except KeyError:
            continue
        if name in desc.fields_by_name:
            ours[key] = text
    OUT.write_text(json.dumps(dict(sorted(ours.items())), indent=0, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(ours)} fields")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
