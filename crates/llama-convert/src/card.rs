//! The `general.*` authorship metadata as gguf-py's `Metadata.load` finds it and
//! `set_gguf_meta_model` writes it: the model card's YAML front matter (README.md), then
//! `config.json`'s `_name_or_path`, then the folder name, each filling what the previous left unset.
//!
//! The front matter is read by a small YAML subset reader (scalars, block and flow lists of
//! scalars, lists of one-level mappings): what model cards use for the keys gguf-py reads. A card
//! it cannot read is treated as no card (gguf-py would read more, or fail).

use std::path::Path;

use fancy_regex::Regex;
use llama_core::gguf::Value;
use serde_json::{Map, Value as Json};

/// Python's `str.title()` on one word.
pub(crate) fn py_title(w: &str) -> String {
    let mut out = String::new();
    let mut prev_cased = false;
    for c in w.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = c.is_alphabetic();
    }
    out
}

/// gguf-py `Metadata.id_to_title`: dashes become spaces, all-lowercase words are title-cased
/// unless they look like a version ("v2") or start with a digit.
pub fn id_to_title(s: &str) -> String {
    let versionish = Regex::new(r"^(v\d+(?:\.\d+)*|\d.*)$").unwrap();
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let has_cased = w.chars().any(|c| c.is_lowercase() || c.is_uppercase());
            let is_lower = has_cased && !w.chars().any(|c| c.is_uppercase());
            if is_lower && !versionish.is_match(w).unwrap_or(false) {
                py_title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What gguf-py's `get_model_id_components` derives from a model id ("org/Name-7B-Instruct-v2").
#[derive(Debug, Default, PartialEq)]
pub struct IdParts {
    pub name: Option<String>,
    pub org: Option<String>,
    pub basename: Option<String>,
    pub finetune: Option<String>,
    pub version: Option<String>,
    pub size_label: Option<String>,
}

fn full(re: &str) -> Regex {
    Regex::new(&format!("(?i)^(?:{re})$")).unwrap()
}

/// gguf-py `Metadata.get_model_id_components`, ported line by line.
pub fn id_components(model_id: &str, total_params: i64) -> IdParts {
    if model_id.contains(' ') {
        return IdParts { name: Some(model_id.to_string()), ..Default::default() };
    }
    let (mut org, name) = match model_id.split_once('/') {
        Some((o, n)) => (Some(o.to_string()), n.to_string()),
        None => (None, model_id.to_string()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = name.split('-').filter(|p| !p.is_empty()).map(str::to_string).collect();
    let mut types: Vec<Vec<&str>> = vec![Vec::new(); parts.len()];
    let (re_version, re_type) = (full(r"(v|iter)?\d+([.]\d+)*"), full(r"i?q\d(_\w)*|b?fp?(16|32)"));
    let re_size = full(r"(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)");
    let re_finetune = full(r"chat|instruct|vision|lora");
    let add = |t: &mut Vec<&'static str>, x: &'static str| {
        if !t.contains(&x) {
            t.push(x)
        }
    };
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if re_version.is_match(&part).unwrap_or(false) {
            add(&mut types[i], "version");
        } else if re_type.is_match(&part).unwrap_or(false) {
            add(&mut types[i], "type");
            parts[i] = part.to_uppercase();
        } else if i > 0 && re_size.is_match(&part).unwrap_or(false) {
            let mut p: Vec<char> = part.replace('_', ".").chars().collect();
            let n = p.len();
            if p[n - 1].is_ascii_digit() && n >= 2 {
                // bloom-7b1 → 7.1b
                let (a, b) = (p[n - 2], p[n - 1]);
                p.truncate(n - 2);
                p.extend(['.', b, a]);
            }
            let n = p.len();
            if n > 1 && p[n - 2].is_ascii_digit() && "kmbt".contains(p[n - 1]) {
                p[n - 1] = p[n - 1].to_ascii_uppercase();
            }
            if total_params != 0 {
                let s: String = p[..p.len() - 1].iter().collect();
                // Python's " KMBT".find: -1 when the suffix is not one of them
                let unit = " KMBT".find(p[p.len() - 1]).map_or(-1, |u| u as i32);
                if let Ok(x) = s.parse::<f64>() {
                    let label = x * 1000f64.powi(unit);
                    let tp = total_params as f64;
                    let far = (total_params < 0 && label < (total_params.abs() / 8) as f64)
                        || (total_params > 0 && (label - tp).abs() > (7 * total_params / 8) as f64);
                    if far {
                        add(&mut types[i], "finetune");
                        let last = p.len() - 1;
                        p[last] = p[last].to_ascii_lowercase();
                    }
                }
            }
            if types[i].is_empty() {
                add(&mut types[i], "size_label");
            }
            parts[i] = p.into_iter().collect();
        } else if i > 0 && re_finetune.is_match(&part).unwrap_or(false) {
            if total_params < 0 && part.eq_ignore_ascii_case("lora") {
                add(&mut types[i], "type");
            } else {
                add(&mut types[i], "finetune");
            }
        }
    }
    let has_numeric_size =
        parts.iter().zip(&types).any(|(n, t)| t.contains(&"size_label") && n.chars().any(|c| c.is_numeric()));
    if has_numeric_size {
        for (n, t) in parts.iter().zip(types.iter_mut()) {
            if t.contains(&"size_label") && n.chars().all(char::is_alphabetic) {
                t.retain(|x| *x != "size_label");
            }
        }
    }
    let mut at_start = true;
    for (p, t) in parts.iter().zip(types.iter_mut()) {
        if at_start && ((t.is_empty() && p.chars().next().is_some_and(char::is_alphabetic)) || t.contains(&"version")) {
            add(t, "basename");
        } else {
            at_start = false;
            if t.is_empty() {
                add(t, "finetune");
            }
        }
    }
    for t in types.iter_mut().rev() {
        if t.contains(&"basename") && t.len() > 1 {
            t.retain(|x| *x != "basename");
        } else {
            break;
        }
    }
    let join = |f: &dyn Fn(&Vec<&str>) -> bool| {
        let mut seen: Vec<&str> = Vec::new();
        for (p, t) in parts.iter().zip(&types) {
            if f(t) {
                seen.push(p);
            }
        }
        if seen.is_empty() {
            None
        } else {
            Some(seen.join("-"))
        }
    };
    let mut basename = join(&|t| t.contains(&"basename"));
    let size_label = {
        let mut seen: Vec<&str> = Vec::new();
        for (p, t) in parts.iter().zip(&types) {
            if t.contains(&"size_label") && !seen.contains(&p.as_str()) {
                seen.push(p);
            }
        }
        if seen.is_empty() {
            None
        } else {
            Some(seen.join("-"))
        }
    };
    let finetune = join(&|t| t.contains(&"finetune"));
    let version = join(&|t| t.contains(&"version") && !t.contains(&"basename"));
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None;
    }
    IdParts { name: Some(name), org, basename, finetune, version, size_label }
}

/// One YAML scalar as `yaml.safe_load` types the ones model cards use.
fn yaml_scalar(s: &str) -> Json {
    let s = s.trim();
    if let Some(q) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        return Json::String(q.replace("\\\"", "\""));
    }
    if let Some(q) = s.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return Json::String(q.replace("''", "'"));
    }
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Json::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "on" | "On" => return Json::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "off" | "Off" => return Json::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Json::from(i);
    }
    Json::String(s.to_string())
}

fn flow_list(s: &str) -> Option<Json> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    if inner.trim().is_empty() {
        return Some(Json::Array(Vec::new()));
    }
    Some(Json::Array(inner.split(',').map(yaml_scalar).collect()))
}

/// `|`, `>`, with an optional chomping indicator: (folded, chomp) where chomp is '-', '+' or ' '.
fn block_scalar_header(rest: &str) -> Option<(bool, char)> {
    let mut c = rest.chars();
    let folded = match c.next()? {
        '|' => false,
        '>' => true,
        _ => return None,
    };
    match c.as_str() {
        "" => Some((folded, ' ')),
        "-" => Some((folded, '-')),
        "+" => Some((folded, '+')),
        _ => None,
    }
}

/// A YAML block scalar's text: the common indentation removed; literal (`|`) keeps the line
/// breaks, folded (`>`) joins lines with spaces (an empty line is a break); one final line break
/// unless stripped (`-`), all trailing ones kept with `+`.
fn block_scalar(lines: &[&str], folded: bool, chomp: char) -> String {
    let indent =
        lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let body: Vec<&str> = lines.iter().map(|l| if l.len() >= indent { &l[indent..] } else { "" }).collect();
    let n_content = body.iter().rposition(|l| !l.is_empty()).map_or(0, |p| p + 1);
    let mut text = String::new();
    for (j, l) in body[..n_content].iter().enumerate() {
        if folded {
            // an empty line is a line break; two adjacent text lines join with a space
            if l.is_empty() {
                text.push('\n');
                continue;
            }
            if j > 0 && !body[j - 1].is_empty() {
                text.push(' ');
            }
        } else if j > 0 {
            text.push('\n');
        }
        text.push_str(l);
    }
    match chomp {
        '-' => {}
        '+' => text.push_str(&"\n".repeat(body.len() - n_content + 1)),
        _ if n_content > 0 => text.push('\n'),
        _ => {}
    }
    text
}

/// The YAML front matter of a model card (gguf-py `load_model_card`), as far as the subset reader
/// goes; None when there is none or it is not readable.
pub fn parse_front_matter(text: &str) -> Option<Map<String, Json>> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"---") {
        return None;
    }
    let body: Vec<String> = lines[1..].iter().take_while(|l| **l != "---").map(|l| l.replace('\t', "  ")).collect();
    let mut out = Map::new();
    let mut i = 0;
    while i < body.len() {
        let line = body[i].trim_end();
        i += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('-') {
            return None; // a structure the subset reader does not know
        }
        let (key, rest) = line.split_once(':')?;
        let key = key.trim().trim_matches('"').to_string();
        let rest = rest.trim();
        if let Some((folded, chomp)) = block_scalar_header(rest) {
            // `key: |` / `key: >`: the indented lines that follow
            let mut lines: Vec<&str> = Vec::new();
            while i < body.len() && (body[i].trim().is_empty() || body[i].starts_with(' ')) {
                lines.push(body[i].trim_end());
                i += 1;
            }
            out.insert(key, Json::String(block_scalar(&lines, folded, chomp)));
            continue;
        }
        if !rest.is_empty() {
            let v = flow_list(rest).unwrap_or_else(|| yaml_scalar(rest));
            out.insert(key, v);
            continue;
        }
        // A block: a list ("- x" or "- k: v" with indented "k2: v2"), or a nested mapping
        // (kept as an empty map: gguf-py reads none of them).
        let mut items: Vec<Json> = Vec::new();
        let mut nested = false;
        while i < body.len() {
            let l = body[i].trim_end();
            if !l.is_empty() && !l.starts_with(' ') && !l.starts_with('-') {
                break;
            }
            i += 1;
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if let Some(item) = t.strip_prefix("- ").or(if t == "-" { Some("") } else { None }) {
                match item.split_once(": ") {
                    Some((k, v)) if !item.starts_with(['"', '\'']) => {
                        let mut m = Map::new();
                        m.insert(k.trim().to_string(), yaml_scalar(v));
                        items.push(Json::Object(m));
                    }
                    // gguf-py quotes "- no" list items (the Norway problem): the language "no"
                    _ if item.trim_end() == "no" => items.push(Json::from("no")),
                    _ => items.push(yaml_scalar(item)),
                }
            } else if let (Some(Json::Object(m)), Some((k, v))) = (items.last_mut(), t.split_once(':')) {
                m.insert(k.trim().to_string(), yaml_scalar(v));
            } else {
                nested = true;
            }
        }
        if nested && items.is_empty() {
            out.insert(key, Json::Object(Map::new()));
        } else if items.is_empty() {
            out.insert(key, Json::Null);
        } else {
            out.insert(key, Json::Array(items));
        }
    }
    Some(out)
}

/// gguf-py's `Metadata` fields that a conversion without overrides can set.
#[derive(Debug, Default)]
pub struct Metadata {
    /// Recommended sampling from generation_config.json: (gguf-py field without `sampling_`,
    /// value), in gguf-py's order.
    pub sampling: Vec<(&'static str, Json)>,
    pub name: Option<String>,
    pub author: Option<String>,
    pub version: Option<String>,
    pub organization: Option<String>,
    pub finetune: Option<String>,
    pub basename: Option<String>,
    pub description: Option<String>,
    pub size_label: Option<String>,
    pub license: Option<String>,
    pub license_name: Option<String>,
    pub license_link: Option<String>,
    pub source_url: Option<String>,
    pub source_doi: Option<String>,
    pub source_uuid: Option<String>,
    pub source_repo_url: Option<String>,
    pub base_models: Option<Vec<Map<String, Json>>>,
    pub datasets: Option<Vec<Map<String, Json>>>,
    pub tags: Option<Vec<String>>,
    pub languages: Option<Vec<String>>,
}

/// Python's `str()` of a YAML value as gguf-py passes it to the writer.
fn as_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}

/// Base models and datasets: an id ("org/name"), a URL, or a mapping as it is.
fn source_entries(card: &Map<String, Json>, keys: [&str; 3], total_params: i64) -> Option<Vec<Map<String, Json>>> {
    let value = keys.iter().find_map(|k| card.get(*k))?;
    let ids: Vec<Json> = match value {
        Json::String(_) => vec![value.clone()],
        Json::Array(a) => a.clone(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    let url_re = Regex::new(r"^https?://huggingface.co/([^/]+/[^/]+)$").unwrap();
    for id in ids {
        let mut e = Map::new();
        match id {
            Json::String(id) if ["http://", "https://", "ssh://"].iter().any(|p| id.starts_with(p)) => {
                e.insert("repo_url".into(), Json::String(id.clone()));
                if id.contains("huggingface.co") {
                    if let Ok(Some(c)) = url_re.captures(&id) {
                        let p = id_components(c.get(1).map_or("", |x| x.as_str()), total_params);
                        put_parts(&mut e, &p);
                    }
                }
            }
            Json::String(id) => {
                let p = id_components(&id, total_params);
                put_parts(&mut e, &p);
                if let (Some(o), Some(n)) = (&p.org, &p.name) {
                    e.insert("repo_url".into(), Json::String(format!("https://huggingface.co/{o}/{n}")));
                }
            }
            Json::Object(m) => e = m,
            _ => {}
        }
        out.push(e);
    }
    Some(out)
}

fn put_parts(e: &mut Map<String, Json>, p: &IdParts) {
    if let Some(n) = &p.name {
        e.insert("name".into(), Json::String(id_to_title(n)));
    }
    if let Some(o) = &p.org {
        e.insert("organization".into(), Json::String(id_to_title(o)));
    }
    if let Some(v) = &p.version {
        e.insert("version".into(), Json::String(v.clone()));
    }
}

/// generation_config.json's key of each `general.sampling.*` field (gguf-py `Metadata.load`:
/// `penalty_repeat` also from `repetition_penalty`); an unreadable file is no file.
const SAMPLING_KEYS: &[(&str, &[&str])] = &[
    ("sequence", &["sequence"]),
    ("top_k", &["top_k"]),
    ("top_p", &["top_p"]),
    ("min_p", &["min_p"]),
    ("xtc_probability", &["xtc_probability"]),
    ("xtc_threshold", &["xtc_threshold"]),
    ("temp", &["temperature"]),
    ("penalty_last_n", &["penalty_last_n"]),
    ("penalty_repeat", &["penalty_repeat", "repetition_penalty"]),
    ("mirostat", &["mirostat"]),
    ("mirostat_tau", &["mirostat_tau"]),
    ("mirostat_eta", &["mirostat_eta"]),
];

fn load_sampling(dir: &Path) -> Vec<(&'static str, Json)> {
    let Some(Json::Object(g)) =
        std::fs::read(dir.join("generation_config.json")).ok().and_then(|b| serde_json::from_slice::<Json>(&b).ok())
    else {
        return Vec::new();
    };
    // gen_config.get(key, default): a key present wins even when null (then nothing is written)
    SAMPLING_KEYS
        .iter()
        .filter_map(|(field, keys)| {
            keys.iter().find_map(|k| g.get(*k)).filter(|v| !v.is_null()).map(|v| (*field, v.clone()))
        })
        .collect()
}

impl Metadata {
    /// gguf-py `Metadata.load(None, dir, None, total_params)` with `convert_hf_to_gguf`'s fallback
    /// of the folder name.
    pub fn load(dir: &Path, config: Option<&Json>, total_params: i64) -> Metadata {
        let mut m = Metadata { sampling: load_sampling(dir), ..Metadata::default() };
        let card = std::fs::read_to_string(dir.join("README.md")).ok().and_then(|t| parse_front_matter(&t));
        if let Some(card) = &card {
            m.apply_card(card, total_params);
        }
        if let Some(nop) = config.and_then(|c| c.get("_name_or_path")).and_then(Json::as_str) {
            if nop.matches('/').count() <= 1 {
                m.fill_from_id(&id_components(nop, total_params));
            }
        }
        let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if let Some(folder) = canon.file_name().map(|s| s.to_string_lossy().into_owned()) {
            m.fill_from_id(&id_components(&folder, total_params));
        }
        m
    }

    fn fill_from_id(&mut self, p: &IdParts) {
        let set = |slot: &mut Option<String>, v: Option<String>| {
            if slot.is_none() && v.is_some() {
                *slot = v;
            }
        };
        set(&mut self.name, p.name.as_deref().map(id_to_title));
        set(&mut self.organization, p.org.as_deref().map(id_to_title));
        set(&mut self.basename, p.basename.clone());
        set(&mut self.finetune, p.finetune.clone());
        set(&mut self.version, p.version.clone());
        set(&mut self.size_label, p.size_label.clone());
    }

    fn apply_card(&mut self, card: &Map<String, Json>, total_params: i64) {
        // `use_model_card_metadata`: a key present in the card fills an unset field (a YAML null
        // leaves it unset).
        let use_key = |m: &mut Metadata, slot: fn(&mut Metadata) -> &mut Option<String>, k: &str| {
            if card.contains_key(k) && slot(m).is_none() && !card[k].is_null() {
                *slot(m) = card.get(k).map(as_text);
            }
        };
        for prefix in ["", "model_"] {
            use_key(self, |m| &mut m.name, &format!("{prefix}name"));
            use_key(self, |m| &mut m.author, &format!("{prefix}author"));
            use_key(self, |m| &mut m.version, &format!("{prefix}version"));
            use_key(self, |m| &mut m.organization, &format!("{prefix}organization"));
            use_key(self, |m| &mut m.description, &format!("{prefix}description"));
            use_key(self, |m| &mut m.finetune, &format!("{prefix}finetune"));
            use_key(self, |m| &mut m.basename, &format!("{prefix}basename"));
            use_key(self, |m| &mut m.size_label, &format!("{prefix}size_label"));
            use_key(self, |m| &mut m.source_url, &format!("{prefix}url"));
            use_key(self, |m| &mut m.source_doi, &format!("{prefix}doi"));
            use_key(self, |m| &mut m.source_uuid, &format!("{prefix}uuid"));
            use_key(self, |m| &mut m.source_repo_url, &format!("{prefix}repo_url"));
        }
        use_key(self, |m| &mut m.author, "model_creator");
        use_key(self, |m| &mut m.basename, "model_type");
        if let Some(b) = source_entries(card, ["base_model", "base_models", "base_model_sources"], total_params) {
            self.base_models.get_or_insert_with(Vec::new).extend(b);
        }
        if let Some(d) = source_entries(card, ["datasets", "dataset", "dataset_sources"], total_params) {
            self.datasets.get_or_insert_with(Vec::new).extend(d);
        }
        // license may be a list (joined with ',' when written)
        if let Some(l) = card.get("license").filter(|v| !v.is_null()) {
            self.license = Some(match l {
                Json::Array(a) => a.iter().map(as_text).collect::<Vec<_>>().join(","),
                other => as_text(other),
            });
        }
        use_key(self, |m| &mut m.license_name, "license_name");
        use_key(self, |m| &mut m.license_link, "license_link");
        let use_array =
            |m: &mut Metadata, slot: fn(&mut Metadata) -> &mut Option<Vec<String>>, k: &str| match card.get(k) {
                None | Some(Json::Null) => {}
                Some(Json::Array(a)) => slot(m).get_or_insert_with(Vec::new).extend(a.iter().map(as_text)),
                Some(v @ Json::String(_)) => slot(m).get_or_insert_with(Vec::new).push(as_text(v)),
                Some(_) => {
                    slot(m).get_or_insert_with(Vec::new);
                }
            };
        use_array(self, |m| &mut m.tags, "tags");
        use_array(self, |m| &mut m.tags, "pipeline_tag");
        use_array(self, |m| &mut m.languages, "languages");
        use_array(self, |m| &mut m.languages, "language");
    }

    /// The `general.*` keys in `set_gguf_meta_model`'s order; `size_label` is the computed one
    /// when the names did not state it.
    pub fn to_kv(&self, size_label: String) -> Vec<(String, Value)> {
        let mut kv: Vec<(String, Value)> = Vec::new();
        for (field, v) in &self.sampling {
            let value = match *field {
                "sequence" => Value::from(as_text(v).as_str()),
                // add_int32
                "top_k" | "penalty_last_n" | "mirostat" => match v.as_i64() {
                    Some(i) => Value::I32(i as i32),
                    None => continue,
                },
                _ => match v.as_f64() {
                    Some(x) => Value::F32(x as f32),
                    None => continue,
                },
            };
            kv.push((format!("general.sampling.{field}"), value));
        }
        let mut s = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                kv.push((format!("general.{k}"), Value::from(v.as_str())));
            }
        };
        s("name", &self.name);
        s("author", &self.author);
        s("version", &self.version);
        s("organization", &self.organization);
        s("finetune", &self.finetune);
        s("basename", &self.basename);
        s("description", &self.description);
        s("size_label", &Some(self.size_label.clone().unwrap_or(size_label)));
        s("license", &self.license);
        s("license.name", &self.license_name);
        s("license.link", &self.license_link);
        s("source.url", &self.source_url);
        s("source.doi", &self.source_doi);
        s("source.uuid", &self.source_uuid);
        s("source.repo_url", &self.source_repo_url);
        for (group, count, entries) in
            [("base_model", "base_model.count", &self.base_models), ("dataset", "dataset.count", &self.datasets)]
        {
            let Some(entries) = entries else { continue };
            kv.push((format!("general.{count}"), Value::U32(entries.len() as u32)));
            for (i, e) in entries.iter().enumerate() {
                for f in ["name", "author", "version", "organization", "description", "url", "doi", "uuid", "repo_url"]
                {
                    if let Some(v) = e.get(f) {
                        kv.push((format!("general.{group}.{i}.{f}"), Value::from(as_text(v).as_str())));
                    }
                }
            }
        }
        if let Some(t) = &self.tags {
            kv.push(("general.tags".into(), Value::str_array(t)));
        }
        if let Some(l) = &self.languages {
            kv.push(("general.languages".into(), Value::str_array(l)));
        }
        kv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gguf-py `get_model_id_components` on ids from its own tests (gguf-py/tests/test_metadata.py).
    #[test]
    fn id_components_as_gguf_py() {
        let p = id_components("Mixtral-8x7B-Instruct-v0.1", 0);
        assert_eq!(p.basename.as_deref(), Some("Mixtral"));
        assert_eq!(p.size_label.as_deref(), Some("8x7B"));
        assert_eq!(p.finetune.as_deref(), Some("Instruct"));
        assert_eq!(p.version.as_deref(), Some("v0.1"));
        let p = id_components("nreimers/MiniLM-L6-H384-uncased", 0);
        assert_eq!(
            (p.name.as_deref(), p.org.as_deref(), p.basename),
            (Some("MiniLM-L6-H384-uncased"), Some("nreimers"), None)
        );
        let p = id_components("bigscience/bloom-7b1-petals", 0);
        assert_eq!(p.size_label.as_deref(), Some("7.1B"));
        assert_eq!(p.finetune.as_deref(), Some("petals"));
        assert_eq!(id_to_title("stackexchange_xml"), "Stackexchange_Xml");
        assert_eq!(id_to_title("flax-sentence-embeddings"), "Flax Sentence Embeddings");
    }

    #[test]
    fn front_matter_subset() {
        let card = "---\nlanguage: en\nlicense: apache-2.0\ntags:\n- a\n- b\ndatasets: [x, y/z]\nbase_model:\n  - name: M\n    version: v1\n---\n# t";
        let m = parse_front_matter(card).unwrap();
        assert_eq!(m["language"], Json::from("en"));
        assert_eq!(m["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(m["datasets"], serde_json::json!(["x", "y/z"]));
        assert_eq!(m["base_model"], serde_json::json!([{"name": "M", "version": "v1"}]));
        assert!(parse_front_matter("# no card").is_none());
        // block scalars, as PyYAML reads them
        let m = parse_front_matter("---\ndescription: |\n  line one\n  line two\nlicense: >-\n  a\n  b\n\n  c\n---\n")
            .unwrap();
        assert_eq!(m["description"], Json::from("line one\nline two\n"));
        assert_eq!(m["license"], Json::from("a b\nc"));
        let m = parse_front_matter("---\na: >\n  a\n\n\n  b\nb: |+\n  a\n\nc: |-\n  a\n   b\n---\n").unwrap();
        assert_eq!((&m["a"], &m["b"], &m["c"]), (&Json::from("a\n\nb\n"), &Json::from("a\n\n"), &Json::from("a\n b")));
    }
}
