//! ConfigMaps and Secrets: keys that can become file names, base64 binary data, and the
//! 1 MiB size limit. A Secret's values are never echoed into an error.

use crate::wellknown::AnnotationScope;
use base64::Engine as _;

use super::field::{FieldError, check, key};
use super::format::is_config_map_key;
use super::meta::{NameFormat, validate_object_meta};
use crate::core::{ConfigMap, Secret};

/// Validates ConfigMap/Secret style data keys at `path` (`data`, `binaryData`).
fn validate_data_keys<'a>(
    keys: impl Iterator<Item = &'a String>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for k in keys {
        check(errs, path, k, is_config_map_key(k));
    }
}

fn is_base64(s: &str) -> bool {
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// Validates a ConfigMap.
pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &cm.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    validate_data_keys(cm.data.keys(), "data", &mut errs);
    validate_data_keys(cm.binary_data.keys(), "binaryData", &mut errs);
    let mut total = 0usize;
    for (k, v) in &cm.data {
        total += k.len() + v.len();
    }
    for (k, v) in &cm.binary_data {
        total += k.len() + v.len();
        if cm.data.contains_key(k) {
            errs.push(FieldError::invalid_str(
                "data",
                k,
                "duplicate of key present in binaryData",
            ));
        }
        if !is_base64(v) {
            errs.push(FieldError::invalid(
                key("binaryData", k),
                "<binary>",
                "must be valid base64",
            ));
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("", 1024 * 1024));
    }
    errs
}

/// Validates a Secret (after `stringData` has been merged into `data`).
pub fn validate_secret(s: &Secret) -> Vec<FieldError> {
    let mut errs = validate_object_meta(
        &s.metadata,
        true,
        NameFormat::Dns1123Subdomain,
        AnnotationScope::Other,
        "metadata",
    );
    validate_data_keys(s.data.keys(), "data", &mut errs);
    validate_data_keys(s.string_data.keys(), "stringData", &mut errs);
    let mut total = 0usize;
    for (k, v) in &s.data {
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(bytes) => total += bytes.len(),
            // The value is secret: never echo it into an error message.
            Err(_) => errs.push(FieldError::invalid(
                key("data", k),
                "<secret contents redacted>",
                "must be valid base64",
            )),
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long("data", 1024 * 1024));
    }
    if let Some(t) = &s.type_
        && t.is_empty()
    {
        errs.push(FieldError::required("type", ""));
    }
    errs
}
