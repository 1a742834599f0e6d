//! The committed OpenAPI document is what the code generates, and it is a sound 3.1 document.

use serde_json::Value;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn committed_document_is_current() {
    let generated = custclass::api::openapi::document_json();
    assert!(
        generated == COMMITTED,
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}

fn collect_refs<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                refs.push(target);
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

#[test]
fn document_is_openapi_3_1_with_resolvable_refs_and_security() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {target}"));
        assert!(doc.pointer(pointer).is_some(), "unresolvable $ref {target}");
    }

    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(operation_ids.insert(id.to_string()), "operationId {id} is not unique");
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} documents no response");
            if path.starts_with("/api/v1/") {
                for status in ["401", "403", "500", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
                let error = &responses["401"]["content"]["application/problem+json"];
                assert!(error.is_object(), "{method} {path}: errors are problem+json");
            }
        }
    }
    for endpoint in ["/api/v1/schemes", "/api/v1/schemes/{scheme}/categories/tree", "/api/v1/api-keys/{id}", "/readyz", "/metrics"] {
        assert!(doc["paths"].get(endpoint).is_some(), "{endpoint} is documented");
    }
}
