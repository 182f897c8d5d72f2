//! Web origins, as browsers write them in the `Origin` header.
//!
//! An [`Origin`] is made only by [`Origin::parse`], which accepts `scheme://host[:port]` (and a
//! trailing `/`) for http and https, and stores the browser's serialisation: lower case, the
//! host in ASCII (an internationalised name as punycode, `https://bücher.example` →
//! `https://xn--bcher-kva.example`), IPv6 in brackets, no default port. Two spellings of one
//! origin are therefore one value, and the administrator's list compares equal to what a
//! browser sends.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin {0:?}: write scheme://host[:port], e.g. https://app.example.com")]
pub struct OriginError(pub String);

impl Origin {
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        let bad = || OriginError(text.to_string());
        // The URL parser forgives what an origin may not hold: whitespace, backslashes, tabs.
        if text.is_empty()
            || text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(bad());
        }
        let url = url::Url::parse(text).map_err(|_| bad())?;
        let only_origin = matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none()
            && url.host().is_some()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            // `Url` adds the "/" itself: the text may end in at most one.
            && !text.ends_with("//")
            && text.split_once("://").is_some_and(|(_, rest)| {
                !rest.trim_end_matches('/').contains(['/', '?', '#', '@'])
            });
        if !only_origin {
            return Err(bad());
        }
        Ok(Origin(url.origin().ascii_serialization()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Origin {
    type Err = OriginError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::parse(s)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Origin::parse(s).unwrap().to_string()
    }

    #[test]
    fn spellings_of_one_origin_are_one_value() {
        assert_eq!(norm("HTTPS://App.Example.com/"), "https://app.example.com");
        assert_eq!(norm("https://a.example:443"), "https://a.example");
        assert_eq!(norm("http://a.example:80"), "http://a.example");
        assert_eq!(norm("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(norm("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(norm("http://[0:0::1]"), "http://[::1]");
        assert_eq!(
            norm("https://bücher.example"),
            "https://xn--bcher-kva.example"
        );
        assert_eq!(
            norm("https://xn--bcher-kva.example"),
            "https://xn--bcher-kva.example"
        );
    }

    #[test]
    fn what_is_not_an_origin_is_refused() {
        for bad in [
            "*",
            "null",
            "",
            "app.example.com",
            "https://a.example/path",
            "https://a.example?q",
            "https://a.example#f",
            "https://user@a.example",
            "file:///x",
            "ftp://a.example",
            "https://",
            "https://a.example:443:443",
            "https://a.example:99999",
            "https://a .example",
            "https://a.example//",
            "https:\\\\a.example",
            " https://a.example",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parsing_a_normalised_origin_gives_it_back() {
        for s in [
            "https://a.example",
            "http://[::1]:1",
            "https://xn--bcher-kva.example:8443",
        ] {
            assert_eq!(norm(&norm(s)), norm(s));
        }
    }
}
