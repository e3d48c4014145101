//! `GET` of a collection, and the label and field selectors a list or a watch filters by.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ketch_api::params::{ListParams, QueryParams};
use ketch_api::resource::ResourceInfo;
use ketch_api::selector::Selector;
use serde_json::{Value, json};

use super::shared::{json_response, read_barrier_unless_any_version, wants_yaml};
use crate::attrs::{Attrs, attrs_of};
use crate::server::ApiState;
use crate::server::encryption;
use crate::server::error::ApiError;
use crate::server::fields::FieldSelector;
use crate::server::path::ResourcePath;

/// Label and field selectors of a list or watch.
pub struct Filter {
    labels: Option<Selector>,
    fields: FieldSelector,
    plural: &'static str,
}

impl Filter {
    pub fn new(info: &'static ResourceInfo, params: &ListParams) -> Result<Self, ApiError> {
        let labels = match &params.label_selector {
            Some(s) => Some(
                Selector::parse(s)
                    .map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?,
            ),
            None => None,
        };
        let fields = match &params.field_selector {
            Some(s) => FieldSelector::parse(info.plural, s)?,
            None => FieldSelector::default(),
        };
        Ok(Self {
            labels,
            fields,
            plural: info.plural,
        })
    }

    /// True when the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.labels.as_ref().is_none_or(Selector::is_empty)
    }

    pub fn matches_attrs(&self, attrs: &Attrs) -> bool {
        self.fields.matches(attrs)
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(&attrs.labels))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.is_empty() || self.matches_attrs(&attrs_of(self.plural, object))
    }
}

pub(super) async fn list(
    st: &ApiState,
    path: &ResourcePath,
    params: &QueryParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let filter = Filter::new(path.info, &params.list)?;
    read_barrier_unless_any_version(st, &params.read).await?;
    let prefix = path.key();
    let (revision, raw) = st.store.list_raw(&prefix)?;
    // Stored Secrets are sealed: they are opened one by one below, never spliced.
    if filter.is_empty() && !wants_yaml(headers) && !encryption::is_secret(&prefix) {
        // The common case — everything of a kind — splices the stored JSON as it is:
        // no parse and re-serialize of thousands of objects.
        let head = json!({
            "apiVersion": path.info.api_version(),
            "kind": path.info.list_kind(),
            "metadata": {"resourceVersion": revision.to_string()},
        });
        let mut body = serde_json::to_vec(&head).expect("JSON values always serialize");
        body.pop(); // the closing brace
        body.extend_from_slice(br#","items":["#);
        for (i, obj) in raw.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(obj);
        }
        body.extend_from_slice(b"]}");
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    }
    let mut items = Vec::with_capacity(raw.len());
    for bytes in &raw {
        let mut obj: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::Internal(format!("stored object is not JSON: {e}")))?;
        if filter.matches(&obj) {
            encryption::reveal(st, &prefix, &mut obj)?;
            items.push(obj);
        }
    }
    let list = json!({
        "apiVersion": path.info.api_version(),
        "kind": path.info.list_kind(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": items,
    });
    Ok(json_response(headers, StatusCode::OK, &list))
}
