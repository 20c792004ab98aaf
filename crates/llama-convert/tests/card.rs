//! The general.* authorship metadata against gguf-py's own heuristics (llama.cpp's gguf-py, run by
//! tools/metadata_reference.py into tests/data/convert/gguf_py_metadata.json): model-id parsing
//! (`get_model_id_components`) for ids × parameter counts, and `Metadata.load` on folders with a
//! model card (front matter), a config `_name_or_path`, a generation_config.json (recommended
//! sampling) and a folder name.

use std::path::PathBuf;

use llama_convert::card::{id_components, Metadata};
use serde_json::{json, Map, Value as Json};

fn reference() -> Json {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/convert/gguf_py_metadata.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn model_id_components_as_gguf_py() {
    let r = reference();
    let mut bad = Vec::new();
    for c in r["ids"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let total = c["total_params"].as_i64().unwrap();
        let p = id_components(id, total);
        let got = json!([p.name, p.org, p.basename, p.finetune, p.version, p.size_label]);
        if got != c["components"] {
            bad.push(format!("{id} ({total}): got {got}, gguf-py {}", c["components"]));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn as_json(m: &Metadata) -> Json {
    let mut o = Map::new();
    for (field, v) in &m.sampling {
        o.insert(format!("sampling_{field}"), v.clone());
    }
    let mut s = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            o.insert(k.into(), Json::from(v.as_str()));
        }
    };
    s("name", &m.name);
    s("author", &m.author);
    s("version", &m.version);
    s("organization", &m.organization);
    s("finetune", &m.finetune);
    s("basename", &m.basename);
    s("description", &m.description);
    s("size_label", &m.size_label);
    s("license", &m.license);
    s("license_name", &m.license_name);
    s("license_link", &m.license_link);
    s("source_url", &m.source_url);
    s("source_doi", &m.source_doi);
    s("source_uuid", &m.source_uuid);
    s("source_repo_url", &m.source_repo_url);
    let entries = |e: &Vec<Map<String, Json>>| Json::Array(e.iter().cloned().map(Json::Object).collect());
    if let Some(b) = &m.base_models {
        o.insert("base_models".into(), entries(b));
    }
    if let Some(d) = &m.datasets {
        o.insert("datasets".into(), entries(d));
    }
    if let Some(t) = &m.tags {
        o.insert("tags".into(), json!(t));
    }
    if let Some(l) = &m.languages {
        o.insert("languages".into(), json!(l));
    }
    Json::Object(o)
}

#[test]
fn folder_metadata_as_gguf_py() {
    let r = reference();
    let tmp = std::env::temp_dir().join(format!("llama-convert-card-{}", std::process::id()));
    let mut bad = Vec::new();
    for f in r["folders"].as_array().unwrap() {
        let dir = tmp.join(f["folder"].as_str().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("README.md"), f["card"].as_str().unwrap()).unwrap();
        if !f["generation_config"].is_null() {
            std::fs::write(dir.join("generation_config.json"), f["generation_config"].to_string()).unwrap();
        }
        let config = f["config_name_or_path"].as_str().map(|n| json!({"_name_or_path": n}));
        let got = as_json(&Metadata::load(&dir, config.as_ref(), 1_000_000_000));
        let mut want = f["metadata"].clone();
        // gguf-py keeps a license list and joins it with ',' when writing
        if let Some(Json::Array(l)) = want.get("license").cloned() {
            let joined: Vec<&str> = l.iter().map(|x| x.as_str().unwrap()).collect();
            want["license"] = Json::from(joined.join(","));
        }
        if got != want {
            bad.push(format!("{}:\n  got     {got}\n  gguf-py {want}", f["folder"]));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
