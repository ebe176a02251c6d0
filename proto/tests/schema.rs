//! `docs/protocol.schema.json` is what the types say. Regenerate with
//! `EWS_WRITE_SCHEMA=1 cargo test -p ews-proto --test schema`.

use std::path::PathBuf;

#[test]
fn checked_in_schema_matches_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.schema.json");
    let want =
        serde_json::to_string_pretty(&ews_proto::schema()).expect("schema serialises") + "\n";
    if std::env::var_os("EWS_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &want).expect("writing the schema");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: run EWS_WRITE_SCHEMA=1 cargo test -p ews-proto --test schema",
        path.display()
    );
}

/// The row of a Markdown table in `doc` whose first cell is `` `key` ``.
fn row<'a>(doc: &'a str, key: &str) -> Option<&'a str> {
    let start = format!("| `{key}` |");
    doc.lines().find(|l| l.starts_with(&start))
}

#[test]
fn protocol_tables_name_every_frame_field_and_kind() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let doc = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let schema = ews_proto::schema();
    let defs = &schema["$defs"];
    let mut missing = Vec::new();
    for frame in defs["ServerFrame"]["oneOf"].as_array().expect("frames") {
        let props = frame["properties"].as_object().expect("frame fields");
        let ty = props["type"]["const"].as_str().expect("frame type");
        match row(&doc, ty) {
            None => missing.push(format!("frame type `{ty}`")),
            Some(r) => missing.extend(
                props
                    .keys()
                    .filter(|f| *f != "type" && !r.contains(&format!("`{f}`")))
                    .map(|f| format!("field `{f}` of `{ty}`")),
            ),
        }
    }
    for kind in defs["ErrorKind"]["oneOf"].as_array().expect("kinds") {
        let k = kind["const"].as_str().expect("kind");
        if row(&doc, k).is_none() {
            missing.push(format!("error kind `{k}`"));
        }
    }
    for ty in ["Event", "StampedEvent"] {
        for f in defs[ty]["properties"].as_object().expect("fields").keys() {
            if row(&doc, f).is_none() {
                missing.push(format!("field `{f}` of {ty}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/protocol.md does not describe: {}",
        missing.join(", ")
    );
}

#[test]
fn the_lifecycle_table_names_every_record_field() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/lifecycle.md");
    let doc = std::fs::read_to_string(&path).expect("docs/lifecycle.md");
    let schema = ews_proto::schema();
    let defs = &schema["$defs"];
    let mut missing = Vec::new();
    for ty in ["SessionLife", "NodeLost"] {
        for f in defs[ty]["properties"].as_object().expect("fields").keys() {
            if row(&doc, f).is_none() {
                missing.push(format!("field `{f}` of {ty}"));
            }
        }
    }
    if row(&doc, "type").is_none() {
        missing.push("field `type`".into());
    }
    assert!(
        missing.is_empty(),
        "docs/lifecycle.md does not describe: {}",
        missing.join(", ")
    );
}
