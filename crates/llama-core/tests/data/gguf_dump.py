"""Independent reference for the Rust GGUF reader: parse a GGUF file with gguf-py and print its
metadata and tensor infos as JSON (floats as IEEE bit patterns, strings as hex, so the comparison
is exact; `--data` adds each tensor's bytes). Nested arrays are rebuilt from gguf-py's flattened field parts."""
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType as T

SCALARS = {T.UINT8: "u8", T.INT8: "i8", T.UINT16: "u16", T.INT16: "i16", T.UINT32: "u32",
           T.INT32: "i32", T.UINT64: "u64", T.INT64: "i64", T.BOOL: "bool"}


def decode(parts, i, gtype):
    """Decode one value of type gtype starting at parts[i]; return (json, next index)."""
    if gtype == T.STRING:  # parts: length, bytes
        return {"t": "str", "v": parts[i + 1].tobytes().hex()}, i + 2
    if gtype == T.FLOAT32:
        return {"t": "f32", "v": int(parts[i].view(np.uint32)[0])}, i + 1
    if gtype == T.FLOAT64:
        return {"t": "f64", "v": int(parts[i].view(np.uint64)[0])}, i + 1
    if gtype in SCALARS:
        v = parts[i][0]
        return {"t": SCALARS[gtype], "v": bool(v) if gtype == T.BOOL else int(v)}, i + 1
    if gtype == T.ARRAY:  # parts: elem type, count, items
        et = T(int(parts[i][0]))
        n = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(n):
            item, i = decode(parts, i, et)
            items.append(item)
        name = "arr" if et == T.ARRAY else ("str" if et == T.STRING else
                                             {T.FLOAT32: "f32", T.FLOAT64: "f64"}.get(et) or SCALARS[et])
        return {"t": "arr", "et": name, "v": items}, i
    raise ValueError(gtype)


def main(path, with_data=False):
    r = GGUFReader(path)
    fields = list(r.fields.values())[3:]  # skip gguf-py's pseudo fields GGUF.version/tensor_count/kv_count
    meta = []
    for f in fields:
        # field parts: key length, key bytes, value type, value parts...
        v, end = decode(f.parts, 3, T(int(f.parts[2][0])))
        assert end == len(f.parts), f.name
        meta.append([f.name, v])
    tensors = []
    for t in r.tensors:
        p = t.field.parts  # name length, name, n_dims, dims, type, offset
        tensors.append({"name": t.name, "dims": [int(d) for d in p[3]], "type": int(p[4][0]),
                        "offset": int(p[5][0]), "n_bytes": int(t.n_bytes), "data_offset": int(t.data_offset)})
        if with_data:
            tensors[-1]["data"] = t.data.tobytes().hex()
    out = {"version": int(r.fields["GGUF.version"].parts[0][0]), "alignment": int(r.alignment),
           "data_offset": int(r.data_offset), "metadata": meta, "tensors": tensors}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], with_data='--data' in sys.argv[2:])
