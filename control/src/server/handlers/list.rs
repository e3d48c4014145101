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
    let resume = params
        .continue_token
        .as_deref()
        .map(Continue::decode)
        .transpose()?;
    read_barrier_unless_any_version(st, &params.read).await?;
    let prefix = path.key();
    let (revision, raw) = st.store.list_raw(&prefix)?;
    // A later page is the same list as the first one, if nothing under the prefix changed
    // since; otherwise the token is too old (client-go then lists afresh).
    let (list_revision, offset) = match &resume {
        None => (revision, 0),
        Some(_) if params.read.resource_version.is_some() => {
            return Err(ApiError::BadRequest(
                "specifying resourceVersion is not allowed when using continue".into(),
            ));
        }
        Some(c) => {
            // A token from a revision this server has not reached (a follower behind, or a
            // forged token) cannot be continued here.
            if c.rv > revision || (c.rv != revision && changed_since(st, &prefix, c.rv, revision)) {
                return Err(ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter."
                        .into(),
                ));
            }
            (c.rv, c.offset)
        }
    };
    let limit = params
        .limit
        .filter(|l| *l > 0)
        .and_then(|l| usize::try_from(l).ok());
    let mut metadata = json!({"resourceVersion": list_revision.to_string()});
    // The page of `total` items from `offset`, and the token for the rest.
    let mut page = |total: usize| -> std::ops::Range<usize> {
        let start = offset.min(total);
        let end = limit.map_or(total, |l| start.saturating_add(l).min(total));
        if end < total {
            metadata["continue"] = json!(
                Continue {
                    rv: list_revision,
                    offset: end,
                }
                .encode()
            );
            metadata["remainingItemCount"] = json!(total - end);
        }
        start..end
    };
    // Stored Secrets are sealed: they are opened one by one below, never spliced.
    if filter.is_empty() && !wants_yaml(headers) && !encryption::is_secret(&prefix) {
        let range = page(raw.len());
        // The common case — everything of a kind — splices the stored JSON as it is:
        // no parse and re-serialize of thousands of objects.
        let head = json!({
            "apiVersion": path.info.api_version(),
            "kind": path.info.list_kind(),
            "metadata": metadata,
        });
        let mut body = serde_json::to_vec(&head).expect("JSON values always serialize");
        body.pop(); // the closing brace
        body.extend_from_slice(br#","items":["#);
        for (i, obj) in raw[range].iter().enumerate() {
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
        let obj: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::Internal(format!("stored object is not JSON: {e}")))?;
        if filter.matches(&obj) {
            items.push(obj);
        }
    }
    let range = page(items.len());
    let mut items: Vec<Value> = items.drain(range).collect();
    for obj in &mut items {
        encryption::reveal(st, &prefix, obj)?;
    }
    let list = json!({
        "apiVersion": path.info.api_version(),
        "kind": path.info.list_kind(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(headers, StatusCode::OK, &list))
}

/// Where a paged list resumes: the revision of its first page and the items already sent.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    offset: usize,
}

impl Continue {
    fn encode(&self) -> String {
        use base64::Engine as _;
        let json = serde_json::to_vec(self).expect("JSON values always serialize");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(token: &str) -> Result<Self, ApiError> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| ApiError::BadRequest(format!("continue: invalid token {token:?}")))
    }
}

/// Whether anything under `prefix` changed after revision `since` (up to `now`, the
/// revision just listed). Unknown counts as changed: a history that no longer reaches back
/// that far, or one behind what was read.
fn changed_since(st: &ApiState, prefix: &str, since: u64, now: u64) -> bool {
    let Ok(sub) = st.hub.subscribe(since) else {
        return true;
    };
    sub.head < now || sub.backlog.iter().any(|e| e.key.starts_with(prefix))
}
