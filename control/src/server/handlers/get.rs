//! `GET` of one object.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use ketch_api::params::QueryParams;

use super::shared::{json_response, read_barrier_unless_any_version};
use crate::server::ApiState;
use crate::server::encryption;
use crate::server::error::ApiError;
use crate::server::path::ResourcePath;

pub(super) async fn get(
    st: &ApiState,
    path: &ResourcePath,
    params: &QueryParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    read_barrier_unless_any_version(st, &params.read).await?;
    let name = path.name.as_deref().unwrap_or_default();
    let key = path.key();
    let mut obj = st
        .store
        .get(&key)?
        .ok_or_else(|| ApiError::not_found(path.info, name))?;
    encryption::reveal(st, &key, &mut obj)?;
    Ok(json_response(headers, StatusCode::OK, &obj))
}
