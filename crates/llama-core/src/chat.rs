//! Chat templates: the model's `tokenizer.chat_template` (Jinja) rendered with minijinja plus its
//! Python-compatibility methods (`.strip()`, `.startswith()` …), which real templates use.
//! A model without a template gets ChatML, as llama.cpp falls back to.

use minijinja::{context, Environment, Error as JinjaError, ErrorKind, Value};

use crate::{Error, Result};

/// ChatML, llama.cpp's fallback when a model has no template.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Renders `template` (None → ChatML) for `messages`, given as a JSON array of objects so every
/// field a template may read (role, content, name, tool_calls …) reaches it.
pub fn render(
    template: Option<&str>,
    messages_json: &str,
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let template = template.unwrap_or(CHATML_TEMPLATE);
    let messages: serde_json::Value = serde_json::from_str(messages_json)
        .map_err(|e| Error::InvalidArgument(format!("chat messages are not valid JSON: {e}")))?;
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, JinjaError> {
        Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| -> String { strftime_now(&fmt) });
    env.add_template("chat", template).map_err(|e| Error::Model(format!("chat template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").map_err(|e| Error::Model(e.to_string()))?;
    tmpl.render(context! {
        messages => Value::from_serialize(&messages),
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(|e| Error::InvalidArgument(format!("chat template: {e}")))
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
        let s = render(None, r#"[{"role":"user","content":"hi"}]"#, true, "", "").unwrap();
        assert_eq!(s, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let t = "{% for m in messages %}{% if m['role'] not in ['user','assistant'] %}{{ raise_exception('bad role') }}{% endif %}{{ m['content'].strip() }}|{% endfor %}";
        assert_eq!(render(Some(t), r#"[{"role":"user","content":"  a "}]"#, false, "", "").unwrap(), "a|");
        let err = render(Some(t), r#"[{"role":"tool","content":"x"}]"#, false, "", "").unwrap_err();
        assert!(err.to_string().contains("bad role"), "{err}");
    }
}
