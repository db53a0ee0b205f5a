//! The published contract is the one the handlers parse. For every operation in
//! `/openapi.json`, a request is built from the document alone — its path and query
//! parameters where the document puts them, its body from the body schema's own example —
//! and sent: none may be refused as malformed (400, 415, 422) or unauthorized, and every
//! answer's status must be one the document lists for the operation. Each example must fit
//! its schema too, so a schema that drifts from the handler (a field renamed, a parameter in
//! the wrong place) fails here.

use serde_json::{json, Value};

use crate::helpers::{data, spawn_app};

/// Follows a `$ref` into `components`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Whether `value` fits `schema`: enough of JSON Schema to hold an example to its schema —
/// references, oneOf / anyOf / allOf, object properties (no unknown ones, every required
/// one), arrays, enums and the basic types.
fn conforms(doc: &Value, schema: &Value, value: &Value) -> bool {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        return options.iter().any(|s| conforms(doc, s, value));
    }
    if let Some(all) = schema["allOf"].as_array() {
        return all.iter().all(|s| conforms(doc, s, value));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return false;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let type_ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        });
    if !type_ok {
        return false;
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        let known = object
            .iter()
            .all(|(k, v)| properties.get(k).is_some_and(|p| conforms(doc, p, v)));
        let required = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .all(|r| object.contains_key(r));
        return known && required;
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        return items.iter().all(|v| conforms(doc, item_schema, v));
    }
    true
}

#[test]
fn the_example_check_notices_a_field_the_schema_does_not_have() {
    let doc = json!({"components": {"schemas": {"Body": {"oneOf": [
        {"type": "object", "required": ["type", "sectionId"],
         "properties": {"type": {"type": "string", "enum": ["GENERAL"]}, "sectionId": {"type": "integer"}}}
    ]}}}});
    let schema = json!({"$ref": "#/components/schemas/Body"});
    assert!(conforms(
        &doc,
        &schema,
        &json!({"type": "GENERAL", "sectionId": 1})
    ));
    assert!(!conforms(
        &doc,
        &schema,
        &json!({"type": "GENERAL", "section_id": 1})
    ));
    assert!(!conforms(
        &doc,
        &schema,
        &json!({"type": "SEATS", "sectionId": 1})
    ));
    assert!(!conforms(
        &doc,
        &schema,
        &json!({"type": "GENERAL", "sectionId": "1"})
    ));
}

#[tokio::test]
async fn a_request_built_from_the_document_is_accepted_by_every_operation() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    // The login example's account.
    boxoffice::users::upsert(
        &app.db.pool,
        "test@example.com",
        "password",
        "CUSTOMER",
        "",
        "",
    )
    .await
    .unwrap();
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 100, 2, 5, 8).await;
    let hold = app.hold(&organizer, event_id, general, 1).await;
    let to_book = app.hold(&organizer, event_id, general, 1).await;
    let booked = app
        .post(
            "/bookings",
            Some(&organizer),
            json!({"reservationIds": [to_book]}),
        )
        .await;
    assert_eq!(booked.status(), 201);
    let reference = data(booked).await["bookingReference"]
        .as_str()
        .unwrap()
        .to_string();

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut path = template.clone();
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                match p["in"].as_str().unwrap() {
                    "path" => {
                        let value = match (name, template.as_str()) {
                            ("id", t) if t.starts_with("/events/") => event_id.to_string(),
                            ("id", t) if t.starts_with("/reservations/") => hold.to_string(),
                            ("sectionId", _) => reserved.to_string(),
                            ("reference", _) => reference.clone(),
                            other => {
                                panic!("{method} {template}: unknown path parameter {other:?}")
                            }
                        };
                        path = path.replace(&format!("{{{name}}}"), &value);
                    }
                    "query" => {
                        let value = match name {
                            "eventId" => Some(event_id.to_string()),
                            _ => [&p["example"], &p["schema"]["example"]]
                                .into_iter()
                                .find_map(|e| match e {
                                    Value::String(s) => Some(s.clone()),
                                    Value::Number(n) => Some(n.to_string()),
                                    _ => None,
                                }),
                        };
                        let required = p["required"].as_bool().unwrap_or(false);
                        match value {
                            Some(v) => query.push((name.to_string(), v)),
                            None => assert!(!required, "{method} {template}: required query parameter {name} has no example"),
                        }
                    }
                    "header" => {}
                    other => panic!("{method} {template}: parameter {name} in {other}"),
                }
            }
            let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let url = if query.is_empty() {
                format!("{}{path}", app.address)
            } else {
                format!("{}{path}?{}", app.address, query.join("&"))
            };
            let mut request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(&organizer);
            if let Some(content) = op["requestBody"]["content"]["application/json"].as_object() {
                let schema = resolve(&doc, &content["schema"]);
                let example = &schema["example"];
                assert!(
                    !example.is_null(),
                    "{method} {template}: the request body schema has no example"
                );
                // The example is what the schema describes, and the server accepts it: so the
                // schema describes what the server accepts.
                assert!(
                    conforms(&doc, &content["schema"], example),
                    "{method} {template}: the example does not fit its own schema: {example}"
                );
                request = request.json(example);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            // A stream never ends: its head and first message are what can be checked.
            let streams = op["responses"]["200"]["content"]
                .get("text/event-stream")
                .is_some();
            let body = if streams && status == 200 {
                assert_eq!(
                    response.headers()["content-type"],
                    "text/event-stream",
                    "{method} {template}: the documented content type"
                );
                let mut response = response;
                String::from_utf8_lossy(&response.chunk().await.unwrap().unwrap()).into_owned()
            } else {
                response.text().await.unwrap_or_default()
            };
            assert!(
                ![400, 401, 403, 415, 422].contains(&status),
                "{method} {template}: the document's own request was refused: {status} {body}"
            );
            assert!(
                op["responses"].get(status.to_string()).is_some(),
                "{method} {template}: answered {status}, which the document does not list: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 26, "every operation was tried ({checked})");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn parameters_are_where_the_handlers_read_them_and_errors_have_one_body() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let in_path = template.contains(&format!("{{{name}}}"));
                assert_eq!(
                    p["in"] == "path",
                    in_path,
                    "{method} {template}: parameter {name} is documented in {}",
                    p["in"]
                );
            }
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {template}: {status} without the error body"
                    );
                }
            }
            if secured {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {template}: needs a token but documents no 401"
                );
            }
            // A body the server refuses unknown fields in says so, variant by variant.
            if let Some(schema) =
                op["requestBody"]["content"]["application/json"]["schema"].as_object()
            {
                let schema = resolve(&doc, &Value::Object(schema.clone())).clone();
                let objects: Vec<Value> = match schema["oneOf"].as_array() {
                    Some(variants) => variants.clone(),
                    None => vec![schema.clone()],
                };
                // (Login alone takes extra fields, as login forms send them.)
                if template != "/auth/login" {
                    for object in objects {
                        assert_eq!(
                            object["additionalProperties"],
                            Value::Bool(false),
                            "{method} {template}: unknown fields are refused but the schema allows them"
                        );
                    }
                }
            }
        }
    }
    app.stop().await.unwrap();
}
