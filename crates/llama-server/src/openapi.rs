//! `/openapi.json`: the routes, their request bodies (every field the server reads; others are
//! rejected) and responses.

use serde_json::{json, Value};

fn num(min: f64, max: f64) -> Value {
    json!({"type": ["number", "null"], "minimum": min, "maximum": max})
}

fn int(min: i64, max: i64) -> Value {
    json!({"type": ["integer", "null"], "minimum": min, "maximum": max})
}

/// Sampling fields both generation endpoints take.
fn sampling() -> serde_json::Map<String, Value> {
    let v = json!({
        "model": {"type": ["string", "null"]},
        "temperature": num(0.0, 100.0),
        "top_p": num(0.0, 1.0),
        "top_k": int(0, 1 << 30),
        "min_p": num(0.0, 1.0),
        "typical_p": num(0.0, 1.0),
        "repeat_penalty": num(0.0, 100.0),
        "presence_penalty": num(-2.0, 2.0),
        "frequency_penalty": num(-2.0, 2.0),
        "repeat_last_n": int(-1, 1 << 20),
        "mirostat": int(0, 2),
        "mirostat_tau": num(0.0, 100.0),
        "mirostat_eta": num(0.0, 1.0),
        "seed": int(-1, u32::MAX as i64),
        "logit_bias": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
        "max_tokens": int(-1, 1 << 30),
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "n": int(1, 1),
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {"type": ["object", "null"], "properties": {"include_usage": {"type": "boolean"},
            "continuous_usage_stats": {"const": false}}, "additionalProperties": false},
        "ignore_eos": {"type": ["boolean", "null"]},
        "grammar": {"type": ["string", "null"], "description": "GBNF (llama.cpp's grammar format)"},
        "user": {"type": ["string", "null"], "description": "accepted, no effect"},
        "cache_prompt": {"type": ["boolean", "null"], "description": "reuse any cached prefix (faster; the answer may differ from a fresh run's in the last bits)"},
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("a literal object"),
    }
}

fn error_response(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn responses(ok: Value) -> Value {
    json!({
        "200": ok,
        "400": error_response("malformed request"),
        "401": error_response("missing or wrong API key"),
        "413": error_response("body too large"),
        "503": error_response("busy (queue full) or loading; see Retry-After"),
    })
}

pub fn spec() -> Value {
    let mut completion = sampling();
    completion.insert(
        "prompt".into(),
        json!({"oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 1}
        ]}),
    );
    completion.insert("echo".into(), json!({"type": ["boolean", "null"]}));
    completion.insert("logprobs".into(), int(0, 20));
    completion.insert("suffix".into(), json!({"type": ["string", "null"], "maxLength": 0}));
    completion.insert("best_of".into(), int(1, 1));
    let mut chat = sampling();
    chat.insert(
        "messages".into(),
        json!({"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Message"}}),
    );
    chat.insert("max_completion_tokens".into(), int(-1, 1 << 30));
    chat.insert("logprobs".into(), json!({"type": ["boolean", "null"]}));
    chat.insert("top_logprobs".into(), int(0, 20));
    chat.insert(
        "response_format".into(),
        json!({"type": ["object", "null"], "properties": {
            "type": {"enum": ["text", "json_object", "json_schema"]},
            "schema": {"type": "object"},
            "json_schema": {"type": "object", "properties": {"name": {"type": "string"}, "schema": {"type": "object"},
                            "strict": {"type": "boolean"}, "description": {"type": "string"}}, "required": ["schema"]}
        }, "required": ["type"]}),
    );
    chat.insert("chat_template_kwargs".into(), json!({"type": ["object", "null"]}));
    chat.insert("tool_choice".into(), json!({"enum": ["none", "auto", null]}));
    chat.insert(
        "parallel_tool_calls".into(),
        json!({"type": ["boolean", "null"], "description": "accepted, no effect: tools are not served yet"}),
    );
    let body = |props: serde_json::Map<String, Value>, required: &[&str]| {
        json!({"required": true, "content": {"application/json": {"schema": {
            "type": "object", "properties": props, "required": required, "additionalProperties": false
        }}}})
    };
    let ok_json =
        |desc: &str| json!({"description": desc, "content": {"application/json": {"schema": {"type": "object"}}}});
    let ok_gen = json!({"description": "the completion (or a text/event-stream of chunks ending in `data: [DONE]` when stream is true)",
        "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {"type": "string"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "llama.py server", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OpenAI-compatible completions and chat over a GGUF model, with llama-server's extras."},
        "paths": {
            "/v1/completions": {"post": {"operationId": "createCompletion", "requestBody": body(completion, &["prompt"]), "responses": responses(ok_gen.clone())}},
            "/v1/chat/completions": {"post": {"operationId": "createChatCompletion", "requestBody": body(chat, &["messages"]), "responses": responses(ok_gen)}},
            "/v1/models": {"get": {"operationId": "listModels", "responses": {"200": ok_json("the served model")}}},
            "/health": {"get": {"operationId": "health", "responses": {"200": ok_json("ok, or no slot free"), "503": ok_json("loading")}}},
            "/v1/embeddings": {"post": {"operationId": "createEmbedding", "requestBody": body(
                serde_json::Map::from_iter([
                    ("input".to_string(), json!({"oneOf": [
                        {"type": "string"},
                        {"type": "array", "minItems": 1, "items": {"type": "string"}},
                        {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                        {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}}]})),
                    ("model".to_string(), json!({"type": ["string", "null"]})),
                    ("encoding_format".to_string(), json!({"enum": ["float", "base64", null]})),
                    ("dimensions".to_string(), json!({"type": ["integer", "null"]})),
                    ("user".to_string(), json!({"type": ["string", "null"], "description": "accepted, no effect"})),
                ]), &["input"]), "responses": responses(ok_json("one L2-normalized vector per input (400 unless started with --embeddings or an embedding model)"))}},
            "/v1/rerank": {"post": {"operationId": "rerank", "requestBody": body(
                serde_json::Map::from_iter([
                    ("query".to_string(), json!({"type": "string"})),
                    ("documents".to_string(), json!({"type": "array", "minItems": 1, "items": {"type": "string"}})),
                    ("top_n".to_string(), json!({"type": ["integer", "null"], "minimum": 1})),
                    ("model".to_string(), json!({"type": ["string", "null"]})),
                ]), &["query", "documents"]), "responses": responses(ok_json("each document's relevance_score with its index, highest first (400 unless started with --reranking and a reranker)"))}},
            "/tokenize": {"post": {"operationId": "tokenize", "requestBody": body(
                serde_json::Map::from_iter([
                    ("content".to_string(), json!({"type": "string"})),
                    ("add_special".to_string(), json!({"type": ["boolean", "null"]})),
                    ("parse_special".to_string(), json!({"type": ["boolean", "null"]})),
                    ("with_pieces".to_string(), json!({"type": ["boolean", "null"]})),
                ]), &["content"]), "responses": responses(ok_json("token ids"))}},
            "/detokenize": {"post": {"operationId": "detokenize", "requestBody": body(
                serde_json::Map::from_iter([("tokens".to_string(), json!({"type": "array", "items": {"type": "integer", "minimum": 0}}))]),
                &["tokens"]), "responses": responses(ok_json("the text"))}},
            "/metrics": {"get": {"operationId": "metrics", "responses": {"200": {"description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "responses": {"200": ok_json("this document")}}},
        },
        "components": {
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["message", "type"], "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                    "code": {"type": ["string", "null"]}}}}},
                "Message": {"type": "object", "required": ["role"], "additionalProperties": false, "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "items": {"type": "object",
                        "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]},
                    "name": {"type": ["string", "null"]},
                    "tool_call_id": {"type": ["string", "null"]},
                    "tool_calls": {"type": ["array", "null"]},
                    "reasoning_content": {"type": ["string", "null"]}
                }}
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}
