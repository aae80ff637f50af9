//! Query parameters, parsed by name so that a bad one is answered 400 with
//! its name. Each endpoint lists the names it takes: a name it does not
//! take (`setp=` for `step=`) is an error too, not a silent fall back to
//! the default, and so is a name given twice.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::error::ApiError;

/// The request's query parameters, by name, values trimmed.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::bad_field("query", err.body_text()))?;
        Params::from_pairs(pairs)
    }
}

impl Params {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Params, ApiError> {
        let mut params = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if params.contains_key(&name) {
                return Err(ApiError::bad_field(
                    &name,
                    format!("`{name}` is given more than once"),
                ));
            }
            params.insert(name, value.trim().to_owned());
        }
        Ok(Params(params))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// 400 naming a parameter the endpoint does not take (the first in
    /// name order, so the answer is the same every time).
    pub fn only(&self, names: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&String> = self
            .0
            .keys()
            .filter(|name| !names.contains(&name.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(name) if names.is_empty() => Err(ApiError::bad_field(
                name,
                format!("unknown parameter `{name}`: this endpoint takes none"),
            )),
            Some(name) => Err(ApiError::bad_field(
                name,
                format!(
                    "unknown parameter `{name}`; this endpoint takes {}",
                    names
                        .iter()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn required(&self, field: &str) -> Result<&str, ApiError> {
        match self.get(field) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(ApiError::bad_field(field, format!("`{field}` is required"))),
        }
    }

    pub fn number(&self, field: &str) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        value.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_field(
                field,
                format!("`{field}` must be a whole number, got {value:?}"),
            )
        })
    }

    /// A time: unix milliseconds, or `now`.
    pub fn instant(&self, field: &str, now_ms: u64) -> Result<Option<u64>, ApiError> {
        match self.get(field) {
            Some("now") => Ok(Some(now_ms)),
            _ => self.number(field),
        }
    }

    /// `true` or `false`.
    pub fn flag(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(value) => Err(ApiError::bad_field(
                field,
                format!("`{field}` must be true or false, got {value:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<Params, ApiError> {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        )
    }

    fn field(err: ApiError) -> String {
        err.body.field.unwrap_or_default()
    }

    #[test]
    fn a_name_the_endpoint_does_not_take_is_named() {
        let given = params(&[("stream", "s"), ("setp", "5"), ("form", "1")]).unwrap();
        let err = given.only(&["stream", "from", "to", "step"]).unwrap_err();
        assert_eq!(field(err), "form");
        assert!(given.only(&["stream", "setp", "form"]).is_ok());
        let err = params(&[("stream", "s")]).unwrap().only(&[]).unwrap_err();
        assert!(err.body.error.contains("takes none"), "{}", err.body.error);
    }

    #[test]
    fn a_name_given_twice_is_an_error() {
        let err = params(&[("stream", "a"), ("stream", "b")]).unwrap_err();
        assert_eq!(field(err), "stream");
    }

    #[test]
    fn values_parse_by_kind_and_name_the_field_when_they_do_not() {
        let given = params(&[
            ("n", " 42 "),
            ("t", "now"),
            ("yes", "true"),
            ("bad", "maybe"),
            ("empty", ""),
        ])
        .unwrap();
        assert_eq!(given.number("n").unwrap(), Some(42));
        assert_eq!(given.instant("t", 7).unwrap(), Some(7));
        assert_eq!(given.flag("yes").unwrap(), Some(true));
        assert_eq!(given.flag("absent").unwrap(), None);
        assert_eq!(field(given.flag("bad").unwrap_err()), "bad");
        assert_eq!(field(given.number("bad").unwrap_err()), "bad");
        assert_eq!(field(given.required("empty").unwrap_err()), "empty");
    }
}
