//! The OpenAPI 3 document of the API (`GET /openapi.json`) and the Swagger UI at `/docs`,
//! whose assets are compiled into the binary (no network access needed).

use crate::error::Problem;
use crate::params::{DatasetName, FormatName};
use crate::routes::*;
use crate::rows::*;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs", responses(
    (status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json"),
))]
#[allow(dead_code)]
fn openapi_json() {}

/// The interactive API documentation (Swagger UI, served offline).
#[utoipa::path(get, path = "/docs", tag = "docs", responses(
    (status = 200, description = "Swagger UI", content_type = "text/html"),
))]
#[allow(dead_code)]
fn docs() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "coinflow API",
        description = "Chunked, keyset-paginated reads of the coinflow warehouse, top-N listings, coin tasks and the ETL ledger. Every error is application/problem+json."
    ),
    paths(
        index::index,
        health::live,
        health::ready,
        read::first_chunk,
        read::next_chunk,
        read::dataset,
        top::top,
        tasks::run_tasks,
        tasks::post_coins,
        tasks::task_results,
        exchanges::stats,
        runs::list,
        runs::one,
        openapi_json,
        docs,
    ),
    components(schemas(
        Problem,
        MarketRow,
        DailyRow,
        CoinRow,
        CoinExchangeRow,
        TraderRow,
        PositionRow,
        RejectRow,
        TaskRow,
        TopRow,
        ExchangeStatRow,
        FormatName,
        DatasetName,
    ))
)]
pub(crate) struct ApiDoc;

/// The routes of `/openapi.json` and `/docs`.
pub(crate) fn routes() -> Vec<rocket::Route> {
    SwaggerUi::new("/docs/<_..>")
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}
