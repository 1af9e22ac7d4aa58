#!/usr/bin/env python3
"""Writes the recurrence kernels of a BIDIRECTIONAL layer with both directions in one
dispatch: shaders/resident_bi_{forward,backward}.wgsl (Algorithm::Resident) and
shaders/grid_bi_{forward,backward}.wgsl (Algorithm::Grid).

A bidirectional layer's two directions are independent recurrences with their own gates,
weights and state rings that write disjoint columns of one output. Run as two dispatches they
serialise (the shared output buffer puts a barrier between them), so each direction has half
the chip and twice the wall time. One dispatch whose first half of workgroups runs the forward
direction and second half the reverse one runs them side by side.

WGSL cannot pick a storage binding at run time, so the per-direction code is instantiated
twice with its per-direction bindings renamed and renumbered. This script does that from the
single-direction sources (edit those, then rerun; a unit test checks the output is current):
    python3 scripts/gen_bidirectional.py            # rewrites the four files
    python3 scripts/gen_bidirectional.py --stdout   # prints them (the up-to-date test compares)

Per direction d in {0, 1} it copies, with every renamed identifier X written X_d:
  - the entry file's per-direction bindings (binding numbers: d = 0 keeps the file's, d = 1
    takes the next free ones, in the order listed in FAMILIES below);
  - every function that reads a per-direction binding, `p.dir` or `p.col`, directly or through
    another such function (from the family's common file, its register file and the entry
    file), with `p.dir` replaced by d and `p.col` by `p.col + d·P`;
  - the entry points as plain functions (builtins become parameters).
Everything else (constants, structs, pure helpers) is emitted once. New entry points with the
original names split the flattened workgroup index: workgroups [0, n) run direction 0 and
[n, 2n) direction 1. Resident: n = ceil(B / b_tile). Grid: n = S·tiles in grid and step mode
(each direction its own barrier counter, `sync_d`), n = tiles in fallback mode. The Resident
files keep resident_common.wgsl as a separate part of the module (it reads no per-direction
binding); the Grid files carry their own copy of grid_common.wgsl (whose barrier reads the
per-direction counter), so that module is activations.wgsl + the generated file.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHADERS = os.path.join(ROOT, "shaders")

# entry file -> (output file, per-direction bindings in the order direction 1 numbers them,
#                common file, register file, common inlined, algorithm)
FAMILIES = {
    "resident_forward.wgsl": (
        "resident_bi_forward.wgsl",
        ["gx", "w_rec", "hseq", "cseq", "aux"],
        "resident_common.wgsl", "resident_regs.wgsl", False, "Resident",
    ),
    "resident_backward.wgsl": (
        "resident_bi_backward.wgsl",
        ["gates", "w_rec", "seq", "dgates", "state", "aux"],
        "resident_common.wgsl", "resident_regs.wgsl", False, "Resident",
    ),
    "grid_forward.wgsl": (
        "grid_bi_forward.wgsl",
        ["gx", "w_rec", "hseq", "cseq", "aux", "sync"],
        "grid_common.wgsl", "grid_regs.wgsl", True, "Grid",
    ),
    "grid_backward.wgsl": (
        "grid_bi_backward.wgsl",
        ["gates", "w_rec", "seq", "dgates", "state", "aux", "sync"],
        "grid_common.wgsl", "grid_regs.wgsl", True, "Grid",
    ),
}
ENTRIES = ["lstm", "gru", "rnn"]


def items(text):
    """Top-level items of a WGSL file as (name, kind, text), comments attached to the next item."""
    out = []
    lines = text.split("\n")
    i = 0
    pending = []
    while i < len(lines):
        line = lines[i]
        if line.startswith("//") or line.strip() == "":
            pending.append(line)
            i += 1
            continue
        start = i
        if line.startswith("@compute"):
            i += 1
            line = lines[i]
        m = re.match(r"(fn|struct)\s+(\w+)", line)
        if m:
            while lines[i] != "}":
                i += 1
            kind, name = m.group(1), m.group(2)
            if lines[start].startswith("@compute"):
                kind = "entry"
        else:
            m = re.search(r"(?:var<[^>]*>|var|const|override)\s+(\w+)", line)
            if not m:
                raise SystemExit(f"unparsed top-level line: {line!r}")
            name = m.group(1)
            kind = "binding" if line.startswith("@group") else "decl"
            while not lines[i].rstrip().endswith(";"):
                i += 1
        body = "\n".join(lines[start : i + 1])
        # Keep only the comment lines directly above the item (no blank line between).
        above = []
        for prev in reversed(pending):
            if not prev.startswith("//"):
                break
            above.insert(0, prev)
        out.append((name, kind, "\n".join(above + [body])))
        pending = []
        i += 1
    return out


def uses(text, name):
    return re.search(rf"(?<![\w.]){name}\b", text) is not None


def rename(text, names, d):
    for n in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w.]){n}\b", f"{n}_{d}", text)
    text = text.replace("p.dir", f"{d}u")
    if d == 1:
        text = text.replace("p.col", "(p.col + p.out_size)")
    return text


def as_function(text):
    """An entry point as a plain function: no @compute line, builtins as parameters."""
    text = re.sub(r"^@compute[^\n]*\n", "", text, flags=re.M)
    return re.sub(r"@builtin\(\w+\)\s+", "", text)


def header(entry_file, out_file, per_dir, first_new, last_new):
    _, _, common, regs, inline, algo = FAMILIES[entry_file]
    kind = "forward" if "forward" in entry_file else "backward"
    names = ", ".join(per_dir)
    if algo == "Resident":
        module = f"activations.wgsl + {common} + this file"
        plan = (
            f"// Memory plan: that of {entry_file}: each workgroup runs one direction, so both share\n"
            "// vbuf/sbuf (resident_common.wgsl) and one register-resident weight chunk per invocation.\n"
            "// Workgroup layout: WG invocations (override); 2·n workgroups, n = ceil(B / b_tile):\n"
            "// flattened workgroup w < n runs direction 0 on batch tile w, w ≥ n direction 1 on tile w - n\n"
        )
    else:
        module = "activations.wgsl + this file (it carries its own copy of grid_common.wgsl)"
        plan = (
            f"// Memory plan: that of {entry_file}: each workgroup runs one direction, so both share\n"
            "// gvec/gsb (grid_common.wgsl) and one register-resident weight chunk per invocation.\n"
            "// Each direction has its own barrier counter (sync_0, sync_1): the two grids of S·tiles\n"
            "// workgroups meet only their own, and a direction whose barrier fails hands only its\n"
            "// own remaining steps to the fallback (which runs per direction in the same dispatch).\n"
            "// Workgroup layout: WG invocations (override); 2·n workgroups, n = S·tiles in grid and\n"
            "// step mode, n = tiles in fallback mode: flattened workgroup w < n runs direction 0 as\n"
            "// workgroup w of its grid, w ≥ n direction 1 as workgroup w - n\n"
        )
    return f"""\
// {out_file} — {algo} recurrence, {kind}, of a BIDIRECTIONAL layer:
// both directions in one dispatch. GENERATED by scripts/gen_bidirectional.py from {entry_file},
// {common} and {regs}: edit those and rerun the script.
//
// Equations, saved buffers and packed-length semantics: those of {entry_file}
// (read its header), once per direction: direction 0 runs time forward, direction 1 reversed.
// Module = {module}.
//
// Bindings (group 0): those of {entry_file} for direction 0 (binding 0 the
// uniform Params with dir = 0 and col = direction 0's first output column), then direction 1's own
// {names} at bindings {first_new}..{last_new}, in that order; the other bindings are shared.
// Direction 1 writes its columns at col + P.
{plan}// (w ≥ 2n: none; the 2-D split of large grids may add some). The direction is uniform per
// workgroup, so every barrier stays in uniform control flow.
// Limits: those of {entry_file} (same plan per direction) plus {last_new} storage bindings
// (max_storage_buffers_per_shader_stage; the host falls back to one dispatch per direction
// below that).
"""


# Workgroups per direction (x) and this workgroup's flattened index (y).
SPLIT = {
    "Resident": """\
// Workgroups per direction and this workgroup's flattened index.
fn bi_split(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    return vec2<u32>((p.batch + p.b_tile - 1u) / p.b_tile, wid.y * nwg.x + wid.x);
}""",
    "Grid": """\
// Workgroups per direction (S·tiles; tiles in fallback mode) and this workgroup's flattened
// index.
fn bi_split(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let tiles = (p.batch + p.b_tile - 1u) / p.b_tile;
    return vec2<u32>(select(p._pad1 * tiles, tiles, fallback_mode()), wid.y * nwg.x + wid.x);
}""",
}


def generate(entry_file):
    out_file, per_dir, common_file, regs_file, inline, algo = FAMILIES[entry_file]
    read = lambda f: open(os.path.join(SHADERS, f)).read()
    common = items(read(common_file))
    regs = items(read(regs_file))
    entry = items(read(entry_file))
    # Per-direction names: the bindings, then every function that reaches them or p.dir/p.col.
    directional = set(per_dir)
    fns = [it for it in common + regs + entry if it[1] in ("fn", "entry")]
    changed = True
    while changed:
        changed = False
        for name, _, text in fns:
            if name in directional:
                continue
            body = text[text.index("{") :]
            if "p.dir" in body or "p.col" in body or any(uses(body, n) for n in directional):
                directional.add(name)
                changed = True
    for e in ENTRIES:
        directional.add(e)
    bindings = {name: text for name, kind, text in entry if kind == "binding"}
    missing = [n for n in per_dir if n not in bindings]
    if missing:
        raise SystemExit(f"{entry_file}: no binding {missing}")
    used = [int(re.search(r"@binding\((\d+)\)", t).group(1)) for t in bindings.values()]
    first_new = max(used) + 1
    once, per = [], []
    own = (common if inline else []) + regs + entry
    for name, kind, text in own:
        (per if name in directional else once).append((name, kind, text))
    per_common = [] if inline else [it for it in common if it[1] == "fn" and it[0] in directional]
    out = [header(entry_file, out_file, per_dir, first_new, first_new + len(per_dir) - 1)]
    for _, _, text in once:
        out.append(text)
    for d in (0, 1):
        out.append(f"// ======== direction {d} ({'forward' if d == 0 else 'reversed'} in time) ========")
        for name, kind, text in per_common + per:
            if kind == "entry":
                text = as_function(text)
            text = rename(text, directional, d)
            if kind == "binding" and d == 1:
                k = first_new + per_dir.index(name)
                text = re.sub(r"@binding\(\d+\)", f"@binding({k})", text)
            out.append(text)
    out.append("// ======== entry points: the workgroup's direction, then its body ========")
    out.append(SPLIT[algo])
    for e in ENTRIES:
        out.append(
            f"""\
@compute @workgroup_size(WG, 1, 1)
fn {e}(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {{
    let s = bi_split(wid, nwg);
    if (s.y >= 2u * s.x) {{
        return;
    }}
    let tile = vec3<u32>(s.y % s.x, 0u, 0u);
    let grid = vec3<u32>(s.x, 1u, 1u);
    if (s.y < s.x) {{
        {e}_0(lid, tile, grid);
    }} else {{
        {e}_1(lid, tile, grid);
    }}
}}"""
        )
    return out_file, "\n\n".join(out) + "\n"


def main():
    for entry_file in FAMILIES:
        out_file, text = generate(entry_file)
        if "--stdout" in sys.argv:
            sys.stdout.write(f"==> {out_file}\n{text}")
        else:
            with open(os.path.join(SHADERS, out_file), "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()
