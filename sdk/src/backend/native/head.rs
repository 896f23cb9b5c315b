//! The request and response as the test host keeps them
//! ([`RequestState`], [`ResponseState`]): their [`Headers`], an ordered,
//! case-insensitive list with the gateway's validation of plugin writes
//! (also used for replies), and the header operations of [`HeaderFields`],
//! implemented once for both.

use super::env::spend_header_bytes;
use crate::backend::fields::HeaderFields;
use crate::validate;

/// Header pairs with lower-case names, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.iter_named(name).next().map(str::to_owned)
    }

    pub(crate) fn get_all(&self, name: &str) -> Vec<String> {
        self.iter_named(name).map(str::to_owned).collect()
    }

    fn iter_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in &self.0 {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.check_write(name, value, false)?;
        self.remove_unchecked(name);
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
        Ok(())
    }

    pub(crate) fn add(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.check_write(name, value, true)?;
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
        Ok(())
    }

    /// What the gateway checks before a plugin's header write, in its
    /// order: the name and value, the call's header byte budget (spent
    /// even when the field bound then refuses the write, as there), and the
    /// bound on the head's fields.
    fn check_write(&self, name: &str, value: &str, append: bool) -> Result<(), String> {
        validate::header_name(name)?;
        validate::header_value(name, value)?;
        spend_header_bytes(name.len() + value.len())?;
        let named = self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if self.0.len() >= validate::MAX_HEAD_FIELDS && (append || !named) {
            return Err(format!(
                "a head holds at most {} header fields",
                validate::MAX_HEAD_FIELDS
            ));
        }
        Ok(())
    }

    /// Removing a reserved header has no effect, as in the gateway.
    pub(crate) fn remove(&mut self, name: &str) {
        if validate::header_name(name).is_ok() {
            self.remove_unchecked(name);
        }
    }

    fn remove_unchecked(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// What a client or upstream sent, or what the host itself writes
    /// (Content-Length): syntax checks only.
    pub(crate) fn add_received(&mut self, name: &str, value: &str) -> Result<(), String> {
        validate::header_syntax(name)?;
        validate::header_value(name, value)?;
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
        Ok(())
    }

    /// The host's own write of a header it manages.
    pub(crate) fn set_by_host(&mut self, name: &str, value: &str) {
        self.remove_unchecked(name);
        self.0.push((name.to_owned(), value.to_owned()));
    }

    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// The request as the test host keeps it; what [`crate::Request`] wraps.
/// `pub` (like [`ResponseState`]) because the sealed side of
/// [`Head`](crate::Head) names it; no path outside the crate reaches it.
#[derive(Debug, Clone)]
pub struct RequestState {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Headers,
    pub(crate) client_ip: String,
    pub(crate) client_cert: Option<crate::types::ClientCert>,
    pub(crate) id: String,
}

impl RequestState {
    pub(crate) fn method(&self) -> String {
        self.method.clone()
    }

    pub(crate) fn path(&self) -> String {
        self.path.clone()
    }

    pub(crate) fn set_path(&mut self, path: &str) -> Result<(), String> {
        validate::path(path)?;
        validate::target(path, self.query.as_deref())?;
        self.path = path.to_owned();
        Ok(())
    }

    pub(crate) fn query(&self) -> Option<String> {
        self.query.clone()
    }

    pub(crate) fn set_query(&mut self, query: Option<&str>) -> Result<(), String> {
        if let Some(query) = query {
            validate::query(query)?;
        }
        validate::target(&self.path, query)?;
        self.query = query.map(str::to_owned);
        Ok(())
    }

    pub(crate) fn client_ip(&self) -> String {
        self.client_ip.clone()
    }

    pub(crate) fn id(&self) -> String {
        self.id.clone()
    }

    pub(crate) fn client_cert(&self) -> Option<crate::types::ClientCert> {
        self.client_cert.clone()
    }
}

/// The response as the test host keeps it; what [`crate::Response`] wraps.
#[derive(Debug, Clone)]
pub struct ResponseState {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
}

impl ResponseState {
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    pub(crate) fn set_status(&mut self, status: u16) -> Result<(), String> {
        validate::status(status)?;
        self.status = status;
        Ok(())
    }
}

/// A head the test host keeps, with its headers in a [`Headers`].
pub(crate) trait HoldsHeaders {
    fn headers(&self) -> &Headers;
    fn headers_mut(&mut self) -> &mut Headers;
}

impl HoldsHeaders for RequestState {
    fn headers(&self) -> &Headers {
        &self.headers
    }

    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

impl HoldsHeaders for ResponseState {
    fn headers(&self) -> &Headers {
        &self.headers
    }

    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

/// The handle of a head on this side of the seam is a mutable borrow of
/// its state.
impl<H: HoldsHeaders> HeaderFields for &mut H {
    fn header(&self, name: &str) -> Option<String> {
        self.headers().get(name)
    }

    fn header_all(&self, name: &str) -> Vec<String> {
        self.headers().get_all(name)
    }

    fn header_names(&self) -> Vec<String> {
        self.headers().names()
    }

    fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.headers_mut().set(name, value)
    }

    fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.headers_mut().add(name, value)
    }

    fn remove_header(&mut self, name: &str) {
        self.headers_mut().remove(name)
    }
}
