//! Generates the Rust bindings for `schema/tflite.fbs` with planus at build time.
//!
//! The output goes to `$OUT_DIR/tflite_generated.rs` and is included once by `src/fb.rs`.
//! planus' parser reports errors on stderr; a schema that does not translate stops the build.

use std::{env, fs, path::PathBuf};

fn main() {
    let schema = PathBuf::from("schema/tflite.fbs");
    println!("cargo:rerun-if-changed={}", schema.display());
    println!("cargo:rerun-if-changed=build.rs");

    let declarations = planus_translation::translate_files(&[&schema]).unwrap_or_else(|| {
        panic!(
            "{} did not translate (see the errors above)",
            schema.display()
        )
    });
    // `false`: do not run rustfmt on the generated code, so a machine without rustfmt builds too.
    let code = planus_codegen::generate_rust(&declarations, false)
        .unwrap_or_else(|e| panic!("generating Rust code for {}: {e}", schema.display()));

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let out = out_dir.join("tflite_generated.rs");
    fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));

    // The schema's own spelling of enum values (`CONV_2D`, `FLOAT32`), which planus turns
    // into CamelCase. Printed names must match what every other TFLite tool prints.
    let text = fs::read_to_string(&schema).expect("schema was just translated");
    let mut names = String::new();
    for (enum_name, fn_name) in [
        ("BuiltinOperator", "builtin_operator_name"),
        ("TensorType", "tensor_type_name"),
    ] {
        names.push_str(&format!(
            "/// The schema's name of a `{enum_name}` value.\npub fn {fn_name}(v: i64) -> Option<&'static str> {{\n    match v {{\n"
        ));
        for (name, value) in enum_values(&text, enum_name) {
            names.push_str(&format!("        {value} => Some(\"{name}\"),\n"));
        }
        names.push_str("        _ => None,\n    }\n}\n");
    }
    let out = out_dir.join("tflite_names.rs");
    fs::write(&out, names).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// `NAME = value` pairs of `enum <name>` in the schema text (explicit values only: the two
/// enums read here give every value explicitly).
fn enum_values(schema: &str, name: &str) -> Vec<(String, i64)> {
    let start = schema
        .find(&format!("enum {name} "))
        .unwrap_or_else(|| panic!("enum {name} not found in the schema"));
    let body = &schema[start..];
    let body = &body[body.find('{').expect("enum body") + 1..body.find('}').expect("enum end")];
    body.lines()
        .map(|l| {
            l.split("//")
                .next()
                .unwrap_or("")
                .trim()
                .trim_end_matches(',')
        })
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}: `{l}` has no explicit value"));
            (
                n.trim().to_string(),
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: bad value in `{l}`")),
            )
        })
        .collect()
}
