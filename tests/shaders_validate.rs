//! Every shader in `shaders/` parses and validates with naga, offline (no GPU needed),
//! and opens with the header comment DESIGN.md §7 asks for.

use std::path::Path;

fn validate(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let module =
        naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string_with_path(&src, &name))?;
    let mut v = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    );
    v.validate(&module)
        .map_err(|e| e.emit_to_string_with_path(&src, &name))?;
    let header: Vec<&str> = src.lines().take_while(|l| l.starts_with("//")).collect();
    if header.len() < 10 {
        return Err(format!(
            "{name}: header comment has {} lines; DESIGN.md §7 wants equations, bindings, memory plan, limits",
            header.len()
        ));
    }
    for word in ["Bindings", "binding"] {
        if !src.contains(word) {
            return Err(format!("{name}: header does not describe its {word}"));
        }
    }
    Ok(())
}

#[test]
fn every_shader_validates_with_naga() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected gemm and lstm shaders, found {files:?}"
    );
    let errors: Vec<String> = files.iter().filter_map(|f| validate(f).err()).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

#[test]
fn a_broken_shader_is_rejected() {
    // The check above must be able to fail: an undeclared identifier is caught.
    let dir = std::env::temp_dir().join("wgpu_rnn_bad_shader");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.wgsl");
    std::fs::write(&f, "@compute @workgroup_size(1) fn main() { let x = y; }\n").unwrap();
    assert!(validate(&f).is_err());
}
