//! The OpenAPI document (`/openapi.json`) and interactive docs (`/docs`, Swagger UI). The
//! docs' assets are compiled into the binary (`utoipa-swagger-ui`'s vendored copy): the page
//! works on a network with no internet.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;
use crate::{
    auth, bookings, discounts, events, health, queue, reservations, sections, stream, venues,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "A reservation engine for ticket on-sales. Success bodies are \
        `{\"data\": ...}`; errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(
        health::live, health::ready, health::cluster,
        auth::register, auth::login, auth::me,
        venues::create, venues::list,
        events::create, events::list, events::details, events::update,
        sections::create, sections::inventory, sections::seat_map, stream::stream,
        reservations::create, reservations::mine, reservations::one, reservations::release,
        bookings::create, bookings::mine, bookings::one, bookings::cancel, bookings::of_event,
        bookings::export::export,
        discounts::create, discounts::validate,
        queue::join, queue::me, queue::stream::stream,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth, &ErrorResponses, &ClosedVariants, &UniqueItems, &DiscountAmount),
    tags((name = "auth"), (name = "venues"), (name = "events"), (name = "sections"),
         (name = "reservations"), (name = "bookings"), (name = "discounts"), (name = "queue"), (name = "health")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Documents the error answers every operation can give, all with the one error body
/// (`ErrorBody`): the ones its handler declares (their codes in the description) get the
/// body; and the ones that come from what every operation shares are added — 401 where a
/// token is required, 400 for malformed paths and queries, 400 / 413 / 415 / 422 where a
/// JSON body is read, 500 and 503 everywhere (503 with `Retry-After`).
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

        let error_response = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ];
            for op in operations.into_iter().flatten() {
                let params = op.parameters.as_deref().unwrap_or_default();
                let has = |place: ParameterIn| {
                    params.iter().any(|p| match p {
                        RefOr::T(p) => p.parameter_in == place,
                        RefOr::Ref(_) => false,
                    })
                };
                let mut shared: Vec<(&str, &str)> = Vec::new();
                if has(ParameterIn::Path) {
                    shared.push(("400", "INVALID_PATH: a path segment is not of its type"));
                }
                if has(ParameterIn::Query) {
                    shared.push(("400", "INVALID_QUERY, INVALID_CURSOR: a query parameter is malformed or out of range"));
                }
                if op.request_body.is_some() {
                    shared.push(("400", "MALFORMED_JSON: the body is not JSON"));
                    shared.push(("413", "PAYLOAD_TOO_LARGE: the body is over MAX_BODY_BYTES"));
                    shared.push((
                        "415",
                        "UNSUPPORTED_MEDIA_TYPE: send Content-Type: application/json",
                    ));
                    shared.push(("422", "VALIDATION_FAILED: a field is missing, unknown, of the wrong type or out of range"));
                }
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    shared.push((
                        "401",
                        "UNAUTHORIZED: no bearer token, or an invalid or expired one",
                    ));
                }
                shared.push((
                    "500",
                    "INTERNAL: a failure on our side (details only in the log)",
                ));
                shared.push((
                    "503",
                    "OVERLOADED, UNAVAILABLE, DATABASE_UNAVAILABLE, SHUTTING_DOWN, TIMEOUT: retry after the Retry-After header",
                ));
                let responses = &mut op.responses.responses;
                for (status, description) in shared {
                    match responses.get_mut(status) {
                        Some(RefOr::T(existing)) => {
                            if !existing.description.contains(description) {
                                existing.description =
                                    format!("{}; {description}", existing.description);
                            }
                        }
                        _ => {
                            responses
                                .insert(status.to_string(), RefOr::T(error_response(description)));
                        }
                    }
                }
                for (status, response) in responses.iter_mut() {
                    let is_error = status.starts_with('4') || status.starts_with('5');
                    if let RefOr::T(response) = response {
                        if is_error && response.content.is_empty() {
                            *response = error_response(&response.description);
                        }
                    }
                }
            }
        }
    }
}

/// The request bodies that are tagged enums refuse unknown fields (`deny_unknown_fields`)
/// in every variant, but utoipa marks only structs so: this closes each variant's object
/// (`additionalProperties: false`) to say what the server does.
struct ClosedVariants;

/// Tagged-enum request bodies whose variants take no other fields.
const CLOSED_TAGGED_BODIES: &[&str] = &["ReservationBody", "NewSectionBody"];

impl Modify for ClosedVariants {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        use utoipa::openapi::RefOr;

        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in CLOSED_TAGGED_BODIES {
            let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(*name) else {
                continue;
            };
            for variant in &mut one_of.items {
                if let RefOr::T(Schema::Object(object)) = variant {
                    object.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// Lists whose items the server refuses to see twice: utoipa's derive has no
/// `uniqueItems`, so it is set here on the named properties (in every variant of a tagged
/// body).
struct UniqueItems;

const UNIQUE_ITEMS: &[(&str, &str)] = &[
    ("NewBooking", "reservationIds"),
    ("ReservationBody", "seatIds"),
];

impl Modify for UniqueItems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ArrayItems, Schema};
        use utoipa::openapi::RefOr;

        fn mark(schema: &mut RefOr<Schema>, property: &str) {
            match schema {
                RefOr::T(Schema::Object(object)) => {
                    if let Some(RefOr::T(Schema::Array(array))) =
                        object.properties.get_mut(property)
                    {
                        array.unique_items = true;
                        debug_assert!(!matches!(array.items, ArrayItems::False));
                    }
                }
                RefOr::T(Schema::OneOf(one_of)) => {
                    for variant in &mut one_of.items {
                        mark(variant, property);
                    }
                }
                _ => {}
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, property) in UNIQUE_ITEMS {
            if let Some(schema) = components.schemas.get_mut(*name) {
                mark(schema, property);
            }
        }
    }
}

/// A discount takes exactly one of `percentOff` and `amountOffCents`. The struct has both
/// as optional fields (so that a body with neither or both gets a message saying so); this
/// states the rule in the schema, as `oneOf` two required sets.
struct DiscountAmount;

impl Modify for DiscountAmount {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
        use utoipa::openapi::RefOr;

        let Some(RefOr::T(Schema::Object(object))) = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("NewDiscountBody"))
        else {
            return;
        };
        // Each branch requires its field (not null) and allows the other only as null.
        let branch = |given: &str, other: &str| {
            let mut branch = object.clone();
            if let Some(RefOr::T(Schema::Object(field))) = branch.properties.get_mut(given) {
                field.schema_type = SchemaType::Type(Type::Integer);
            }
            branch.properties.insert(
                other.to_string(),
                ObjectBuilder::new().schema_type(Type::Null).into(),
            );
            branch.required.push(given.to_string());
            branch
        };
        let with_percent = branch("percentOff", "amountOffCents");
        let with_amount = branch("amountOffCents", "percentOff");
        let description = object.description.clone();
        let mut one_of = OneOfBuilder::new()
            .item(Schema::Object(with_percent))
            .item(Schema::Object(with_amount))
            .description(description)
            .build();
        one_of.example = object.example.clone();
        *openapi
            .components
            .as_mut()
            .expect("components exist")
            .schemas
            .get_mut("NewDiscountBody")
            .expect("checked above") = RefOr::T(Schema::OneOf(one_of));
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxoffice_engine::limits;

    /// Every `pattern` in the document, with where it is.
    fn patterns(value: &serde_json::Value, at: &str, found: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("pattern", serde_json::Value::String(p)) => {
                            found.push((at.to_string(), p.clone()))
                        }
                        _ => patterns(v, &format!("{at}/{key}"), found),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    patterns(v, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    /// The attributes must spell patterns as literals; this holds each to the constant the
    /// handlers' checks are written against, so the two cannot drift apart.
    #[test]
    fn every_pattern_in_the_document_is_one_the_handlers_check() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut found = Vec::new();
        patterns(&doc, "", &mut found);
        let known = [
            limits::NAME_PATTERN,
            limits::TEXT_PATTERN,
            limits::DISCOUNT_CODE_PATTERN,
            crate::pagination::CURSOR_PATTERN,
            crate::auth::EMAIL_PATTERN,
            crate::extract::IDEMPOTENCY_KEY_PATTERN,
            crate::events::STATUS_PATTERN,
        ];
        assert!(found.len() >= 12, "{found:?}");
        for (at, pattern) in &found {
            assert!(known.contains(&pattern.as_str()), "{at}: {pattern}");
        }
        for pattern in known {
            assert!(found.iter().any(|(_, p)| p == pattern), "{pattern} unused");
        }
    }
}
