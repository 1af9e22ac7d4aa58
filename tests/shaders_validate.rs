//! Every shader module the crate compiles parses and validates with naga, offline (no GPU
//! needed); every file in `shaders/` is part of some module and opens with the header
//! comment DESIGN.md §7 asks for.

use std::collections::BTreeSet;
use std::path::Path;

fn validate(name: &str, src: &str) -> Result<(), String> {
    let module =
        naga::front::wgsl::parse_str(src).map_err(|e| e.emit_to_string_with_path(src, name))?;
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    v.validate(&module)
        .map_err(|e| e.emit_to_string_with_path(src, name))?;
    Ok(())
}

fn header_ok(name: &str, src: &str) -> Result<(), String> {
    let header: Vec<&str> = src.lines().take_while(|l| l.starts_with("//")).collect();
    if header.len() < 10 {
        return Err(format!(
            "{name}: header comment has {} lines; DESIGN.md §7 wants equations, bindings, memory plan, limits",
            header.len()
        ));
    }
    let text = header.join("\n");
    for word in ["Binding", "Limit", "emory"] {
        if !text.contains(word) {
            return Err(format!("{name}: header does not mention {word}"));
        }
    }
    Ok(())
}

#[test]
fn every_shader_module_validates_with_naga() {
    let modules = wgpu_rnn::shader_modules();
    assert!(modules.len() >= 3, "expected gemm and lstm modules");
    let errors: Vec<String> = modules
        .iter()
        .filter_map(|m| validate(m.name, m.source).err())
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

#[test]
fn every_shader_file_is_used_and_has_a_header() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let used: BTreeSet<&str> = wgpu_rnn::shader_modules()
        .iter()
        .flat_map(|m| m.files.iter().copied())
        .collect();
    let mut errors = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("shaders/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|x| x != "wgsl") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !used.contains(name.as_str()) {
            errors.push(format!("{name} is in shaders/ but no module uses it"));
        }
        let src = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = header_ok(&name, &src) {
            errors.push(e);
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn a_broken_shader_is_rejected() {
    // The validation above must be able to fail: an undeclared identifier is caught.
    assert!(
        validate(
            "bad.wgsl",
            "@compute @workgroup_size(1) fn main() { let x = y; }\n"
        )
        .is_err()
    );
    assert!(header_ok("bad.wgsl", "// one line\nfn f() {}\n").is_err());
}

/// WGSL lets a store to one component of a vector access the whole vector (§14.5.1), and
/// DXC and Metal may compile a dynamically indexed one as a read-modify-write, so
/// invocations that write different components of one workgroup vec4 race there. No shader
/// may store a single component of a `var<workgroup>` vec4 array, except resident_common's
/// `vset` in its unstaged branch, which only Vulkan runs (SPIR-V keeps the store scalar;
/// every other backend gets `STAGED = 1`, kernels::resident::staged).
#[test]
fn no_component_stores_into_workgroup_vec4s() {
    let dir = format!("{}/shaders", env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        // Names of workgroup vec4 arrays declared in any shader (modules concatenate files).
        for decl in src.lines().filter(|l| l.starts_with("var<workgroup>")) {
            if !decl.contains("vec4<f32>") {
                continue;
            }
            let name = decl["var<workgroup>".len()..]
                .trim()
                .split(':')
                .next()
                .unwrap();
            for other in std::fs::read_dir(&dir).unwrap() {
                let p = other.unwrap().path();
                let text = std::fs::read_to_string(&p).unwrap();
                let of = p.file_name().unwrap().to_string_lossy().to_string();
                for (n, line) in text.lines().enumerate() {
                    let l = line.trim_start();
                    if l.starts_with("//") || !l.starts_with(&format!("{name}[")) {
                        continue;
                    }
                    // `name[i][j] = …` or `name[i].x = …` (not `==`).
                    let lhs = l.split('=').next().unwrap();
                    let is_store = l.contains('=') && !l.contains("==") && !lhs.contains('(');
                    let component = lhs.matches('[').count() > 1 || lhs.contains("].");
                    if is_store && component {
                        found.push(format!("{of}:{}: {l}", n + 1));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    let allowed = |f: &String| {
        f.starts_with("resident_common.wgsl:") && f.ends_with(": vbuf[i][k % 4u] = x;")
    };
    let bad: Vec<_> = found.iter().filter(|f| !allowed(f)).collect();
    assert!(
        bad.is_empty(),
        "component stores into workgroup vec4s: {bad:#?}"
    );
    assert!(
        found.iter().any(allowed),
        "the check no longer sees Resident's vset"
    );
}
