//! The reviews: `authorization.k8s.io/v1` SelfSubjectAccessReview, SubjectAccessReview and
//! SelfSubjectRulesReview, and `authentication.k8s.io/v1` SelfSubjectReview. Each is a
//! `POST` whose answer is the object with its `status` set; nothing is stored (Kubernetes'
//! "virtual" resources).

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use ketch_api::FieldError;
use ketch_api::authorization::{
    AUTHENTICATION_GROUP, GROUP, NonResourceAttributes, ResourceAttributes,
    SelfSubjectAccessReview, SelfSubjectReview, SelfSubjectReviewStatus, SelfSubjectRulesReview,
    SubjectAccessReview, UserInfo,
};
use ketch_api::decode::{Invalid, decode};
use serde::Serialize;
use serde_json::Value;

use super::shared::{json_response, read_object};
use crate::authz::Request;
use crate::server::ApiState;
use crate::server::auth::{Attributes, User};
use crate::server::error::ApiError;

/// Which review a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Review {
    SelfAccess,
    Access,
    SelfRules,
    SelfSubject,
}

impl Review {
    /// The review at `/apis/<rest>`, if it names one.
    pub(super) fn of_path(rest: &str) -> Option<Review> {
        match rest.trim_matches('/') {
            "authorization.k8s.io/v1/selfsubjectaccessreviews" => Some(Review::SelfAccess),
            "authorization.k8s.io/v1/subjectaccessreviews" => Some(Review::Access),
            "authorization.k8s.io/v1/selfsubjectrulesreviews" => Some(Review::SelfRules),
            "authentication.k8s.io/v1/selfsubjectreviews" => Some(Review::SelfSubject),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Review::SelfAccess => "SelfSubjectAccessReview",
            Review::Access => "SubjectAccessReview",
            Review::SelfRules => "SelfSubjectRulesReview",
            Review::SelfSubject => "SelfSubjectReview",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Review::SelfSubject => AUTHENTICATION_GROUP,
            _ => GROUP,
        }
    }

    /// What creating this review is, for the authorizer (`system:basic-user` grants the
    /// self reviews to every authenticated caller).
    pub(super) fn attributes(self) -> Attributes<'static> {
        Attributes {
            verb: "create",
            group: self.group(),
            resource: match self {
                Review::SelfAccess => "selfsubjectaccessreviews",
                Review::Access => "subjectaccessreviews",
                Review::SelfRules => "selfsubjectrulesreviews",
                Review::SelfSubject => "selfsubjectreviews",
            },
            subresource: None,
            namespace: None,
            name: None,
            field_selector: None,
        }
    }
}

/// Answers `review` for `user`.
///
/// # Errors
/// Not a `POST`, a body that does not decode (by field path), or an invalid spec.
pub(super) async fn review(
    st: &ApiState,
    user: &User,
    review: Review,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: {method} {}",
            review.kind()
        )));
    }
    let mut value = read_object(headers, body).await?;
    let api_version = format!("{}/v1", review.group());
    check_type(&mut value, review, &api_version)?;
    let invalid = |errors: Vec<FieldError>| {
        ApiError::Invalid(Invalid {
            kind: format!("{}.{}", review.kind(), review.group()),
            name: String::new(),
            errors,
        })
    };
    let answer = match review {
        Review::SelfAccess => {
            let mut r: SelfSubjectAccessReview = decode(&value).map_err(|e| invalid(vec![e]))?;
            let req = request_of(
                r.spec.resource_attributes.as_ref(),
                r.spec.non_resource_attributes.as_ref(),
            )
            .map_err(invalid)?;
            r.status = Some(st.authz.review(user, &req));
            to_value(&r)
        }
        Review::Access => {
            let mut r: SubjectAccessReview = decode(&value).map_err(|e| invalid(vec![e]))?;
            if !r.spec.extra.is_empty() {
                return Err(invalid(vec![FieldError::not_supported_yet(
                    "spec.extra",
                    "authorizing by extra user attributes",
                )]));
            }
            let subject = User {
                name: r.spec.user.clone().unwrap_or_default(),
                groups: r.spec.groups.clone(),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(invalid(vec![FieldError::required(
                    "spec.user",
                    "at least one of user or group must be specified",
                )]));
            }
            let req = request_of(
                r.spec.resource_attributes.as_ref(),
                r.spec.non_resource_attributes.as_ref(),
            )
            .map_err(invalid)?;
            r.status = Some(st.authz.review(&subject, &req));
            to_value(&r)
        }
        Review::SelfRules => {
            let mut r: SelfSubjectRulesReview = decode(&value).map_err(|e| invalid(vec![e]))?;
            let ns = r.spec.namespace.as_deref().filter(|n| !n.is_empty());
            r.status = Some(st.authz.rules(user, ns));
            to_value(&r)
        }
        Review::SelfSubject => {
            let mut r: SelfSubjectReview = decode(&value).map_err(|e| invalid(vec![e]))?;
            r.status = Some(SelfSubjectReviewStatus {
                user_info: UserInfo {
                    username: Some(user.name.clone()),
                    uid: None,
                    groups: user.groups.clone(),
                    extra: Default::default(),
                },
            });
            to_value(&r)
        }
    }?;
    Ok(json_response(headers, StatusCode::CREATED, &answer))
}

/// Fills in `apiVersion` and `kind`, refusing other ones (as admission does for stored kinds).
fn check_type(value: &mut Value, review: Review, api_version: &str) -> Result<(), ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON/YAML object".into(),
        ));
    };
    for (field, want) in [("apiVersion", api_version), ("kind", review.kind())] {
        match map.get(field) {
            None => {
                map.insert(field.into(), want.into());
            }
            Some(Value::String(s)) if s == want => {}
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "{field}: Invalid value: {other}: must be {want:?}"
                )));
            }
        }
    }
    Ok(())
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(format!("encoding a review: {e}")))
}

/// The request a review's spec describes: exactly one of resource and non-resource
/// attributes, with a verb.
fn request_of<'a>(
    res: Option<&'a ResourceAttributes>,
    non: Option<&'a NonResourceAttributes>,
) -> Result<Request<'a>, Vec<FieldError>> {
    let empty = |s: &'a Option<String>| s.as_deref().filter(|v| !v.is_empty());
    match (res, non) {
        (Some(r), None) => {
            let Some(verb) = empty(&r.verb) else {
                return Err(vec![FieldError::required(
                    "spec.resourceAttributes.verb",
                    "",
                )]);
            };
            Ok(Request::Resource(Attributes {
                verb,
                group: r.group.as_deref().unwrap_or(""),
                resource: r.resource.as_deref().unwrap_or(""),
                subresource: empty(&r.subresource),
                namespace: empty(&r.namespace),
                name: empty(&r.name),
                field_selector: None,
            }))
        }
        (None, Some(n)) => match (empty(&n.verb), empty(&n.path)) {
            (Some(verb), Some(path)) => Ok(Request::NonResource { verb, path }),
            (None, _) => Err(vec![FieldError::required(
                "spec.nonResourceAttributes.verb",
                "",
            )]),
            (_, None) => Err(vec![FieldError::required(
                "spec.nonResourceAttributes.path",
                "",
            )]),
        },
        (Some(_), Some(_)) => Err(vec![FieldError::invalid(
            "spec.resourceAttributes",
            "{...}",
            "cannot be specified in combination with nonResourceAttributes",
        )]),
        (None, None) => Err(vec![FieldError::required(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )]),
    }
}
