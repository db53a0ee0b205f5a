//! The OpenAPI document (`/openapi.json`) and interactive docs (`/docs`).

use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

use crate::state::AppState;
use crate::{auth, bookings, discounts, events, health, reservations, sections, venues};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "A reservation engine for ticket on-sales. Success bodies are \
        `{\"data\": ...}`; errors are `{\"error\": {\"code\", \"message\"}}` with stable codes."),
    paths(
        health::live, health::ready,
        auth::register, auth::login, auth::me,
        venues::create, venues::list,
        events::create, events::list, events::details, events::update,
        sections::create, sections::inventory, sections::seat_map,
        reservations::create, reservations::mine, reservations::one, reservations::release,
        bookings::create, bookings::mine, bookings::one, bookings::cancel, bookings::of_event,
        bookings::export::export,
        discounts::create, discounts::validate,
    ),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "venues"), (name = "events"), (name = "sections"),
         (name = "reservations"), (name = "bookings"), (name = "discounts"), (name = "health")),
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

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/openapi.json",
            get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .merge(Scalar::with_url("/docs", ApiDoc::openapi()))
}
