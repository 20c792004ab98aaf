//! Chat templates: the model's `tokenizer.chat_template` (Jinja) rendered with minijinja plus its
//! Python-compatibility methods (`.strip()`, `.startswith()` …), which real templates use.
//! A model without a template gets ChatML, as llama.cpp falls back to.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind, Value};

use crate::{Error, Result};

/// ChatML, llama.cpp's fallback when a model has no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Renders `template` (None → ChatML) for `messages`, given as a JSON array of objects so every
/// field a template may read (role, content, name, tool_calls …) reaches it. `extra_json`, a JSON
/// object, adds variables to the template's context (`tools`, and `chat_template_kwargs` such as
/// `enable_thinking`, as transformers' `apply_chat_template(**kwargs)` passes them); its keys may
/// not replace the four the renderer sets.
pub fn render(
    template: Option<&str>,
    messages_json: &str,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
    extra_json: Option<&str>,
) -> Result<String> {
    let template = template.unwrap_or(CHATML_TEMPLATE);
    // Parsed straight into template values, keeping each object's key order (a tool's JSON is
    // printed back by `tojson` in the order the caller wrote it, as transformers and llama.cpp do).
    let messages: Value = serde_json::from_str(messages_json)
        .map_err(|e| Error::InvalidArgument(format!("chat messages are not valid JSON: {e}")))?;
    let extra: Value = match extra_json {
        None => Value::from_serialize(serde_json::Map::new()),
        Some(j) => serde_json::from_str(j)
            .map_err(|e| Error::InvalidArgument(format!("chat template variables are not valid JSON: {e}")))?,
    };
    if extra.kind() != minijinja::value::ValueKind::Map {
        return Err(Error::InvalidArgument("chat template variables must be a JSON object".into()));
    }
    for key in ["messages", "add_generation_prompt", "bos_token", "eos_token"] {
        if extra.get_attr(key).is_ok_and(|v| !v.is_undefined()) {
            return Err(Error::InvalidArgument(format!("chat template variable '{key}' is set by the renderer")));
        }
    }
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| -> String { strftime_now(&fmt) });
    env.add_filter("tojson", tojson);
    env.add_template("chat", template).map_err(|e| Error::Model(format!("chat template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").map_err(|e| Error::Model(e.to_string()))?;
    tmpl.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
        ..extra
    })
    .map_err(|e| Error::InvalidArgument(format!("chat template: {e}")))
}

/// `tojson` as templates expect it (transformers' and llama.cpp's: Python's `json.dumps` with
/// `ensure_ascii=False`): ", " and ": " separators, keys in their order, non-ASCII kept (escaped
/// with `ensure_ascii=True`), and with `indent=N` one item per line. Jinja2's own HTML-safe variant (sorted keys, `<` escaped) is not
/// what chat templates were trained with.
fn tojson(value: &Value, kwargs: minijinja::value::Kwargs) -> std::result::Result<Value, JinjaError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    dump_json(value, indent, 0, &mut out)?;
    if ascii == Some(true) {
        out = out.encode_utf16().fold(String::new(), |mut s, u| {
            if u < 0x80 {
                s.push(u as u8 as char);
            } else {
                s.push_str(&format!("\\u{u:04x}"));
            }
            s
        });
    }
    Ok(Value::from_safe_string(out))
}

fn dump_json(v: &Value, indent: Option<usize>, depth: usize, out: &mut String) -> std::result::Result<(), JinjaError> {
    use minijinja::value::ValueKind;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&v.to_string()),
        ValueKind::String => dump_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                dump_json(item, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let keys: Vec<Value> = v.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                dump_str(&k.to_string(), out);
                out.push_str(": ");
                dump_json(&v.get_item(k)?, indent, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        k => return Err(JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: cannot serialize a {k}"))),
    }
    Ok(())
}

/// A JSON string as Python's json.dumps(ensure_ascii=False) writes it.
fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Today's date for templates that print it (Llama 3.x); supports the %d %b %B %Y %m codes they use.
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_and_generation_prompt() {
        let s = render(None, r#"[{"role":"user","content":"hi"}]"#, true, "", "", None).unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let t = "{% for m in messages %}{% if m['role'] not in ['user','assistant'] %}{{ raise_exception('bad role') }}{% endif %}{{ m['content'].strip() }}|{% endfor %}";
        assert_eq!(render(Some(t), r#"[{"role":"user","content":"  a "}]"#, false, "", "", None).unwrap(), "a|");
        let err = render(Some(t), r#"[{"role":"tool","content":"x"}]"#, false, "", "", None).unwrap_err();
        assert!(err.to_string().contains("bad role"), "{err}");
    }
}
