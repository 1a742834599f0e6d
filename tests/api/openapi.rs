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
    for endpoint in
        ["/api/v1/schemes", "/api/v1/schemes/{scheme}/categories/tree", "/api/v1/api-keys/{id}", "/readyz", "/metrics"]
    {
        assert!(doc["paths"].get(endpoint).is_some(), "{endpoint} is documented");
    }
}

/// What an integrator reads in Swagger UI or a generated client: every operation says
/// what it does (a summary and a description, from the handler's doc comment), every
/// request body shows an example, and no object is left without a shape (a generated
/// client would type it as unknown).
#[test]
fn every_operation_is_described_and_every_body_has_an_example_and_a_shape() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemas = &doc["components"]["schemas"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for field in ["summary", "description"] {
                let text = operation[field].as_str().unwrap_or("");
                assert!(text.trim().len() >= 10, "{method} {path} has no {field}");
            }
            let Some(content) = operation["requestBody"]["content"].as_object() else { continue };
            for (media_type, media) in content {
                let referenced = media["schema"]["$ref"]
                    .as_str()
                    .and_then(|target| target.rsplit('/').next())
                    .map(|name| &schemas[name]);
                let has_example = media.get("example").is_some()
                    || media.get("examples").is_some()
                    || referenced.is_some_and(|schema| schema.get("example").is_some());
                let is_file = media_type != "application/json";
                assert!(has_example || is_file, "{method} {path}: the {media_type} body has no example");
            }
        }
    }
    let mut shapeless = Vec::new();
    find_shapeless_objects(&doc, String::new(), &mut shapeless);
    assert!(shapeless.is_empty(), "objects without properties or a type for their values: {shapeless:#?}");
}

/// Objects whose values have no schema: neither `properties`, nor `additionalProperties`
/// with a schema, nor a composition.
fn find_shapeless_objects(value: &Value, at: String, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let is_object = match &map.get("type") {
                Some(Value::String(kind)) => kind == "object",
                Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "object"),
                _ => false,
            };
            let shaped = map.get("properties").is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty()))
                || map.get("additionalProperties").is_some_and(Value::is_object)
                || ["oneOf", "anyOf", "allOf", "$ref"].iter().any(|key| map.contains_key(*key));
            if is_object && !shaped {
                found.push(at.clone());
            }
            for (key, child) in map {
                find_shapeless_objects(child, format!("{at}/{key}"), found);
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(index, child)| find_shapeless_objects(child, format!("{at}/{index}"), found)),
        _ => {}
    }
}
