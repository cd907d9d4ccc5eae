//! Image references: validated with oci-client's parser (the distribution grammar, which refuses
//! `example.com/a..b/c:1` and uppercase repositories), but kept as the user wrote them: the
//! parser's normalised form (`docker.io/library/…`) is never what gets injected.
//!
//! The config's `tools.image`, the pod's `dragonfly.io/tools-image` override, the pinner and
//! `serve`'s start-up all read references here.

use oci_client::Reference;

/// Why a text is not an image reference; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid image reference: {why}")]
pub struct ImageRefError {
    text: String,
    why: String,
}

/// The parts of a reference as written: `name[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageParts<'a> {
    /// Everything before the tag and digest: `[registry/]repository`.
    pub name: &'a str,
    pub tag: Option<&'a str>,
    /// `algorithm:hex`, lowercase (what registries and container runtimes compare).
    pub digest: Option<&'a str>,
}

impl<'a> ImageParts<'a> {
    pub fn parse(text: &'a str) -> Result<Self, ImageRefError> {
        let bad = |why: String| ImageRefError { text: text.to_owned(), why };
        // The parser's regex is linear, but a reference this long is no image anyone pulls.
        if text.len() > 4096 {
            return Err(bad("longer than 4096 bytes".to_owned()));
        }
        Reference::try_from(text).map_err(|error| bad(error.to_string()))?;
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (text, None),
        };
        if digest.is_some_and(|d| d.chars().any(|c| c.is_ascii_uppercase())) {
            return Err(bad("the digest must be lowercase hex".to_owned()));
        }
        // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        Ok(ImageParts { name, tag, digest })
    }

    /// The same name and tag, pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> String {
        match self.tag {
            Some(tag) => format!("{}:{tag}@{digest}", self.name),
            None => format!("{}@{digest}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_tag_and_digest_as_written() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let with_port = format!("localhost:5000/tools:v1@{digest}");
        let parts = ImageParts::parse(&with_port).unwrap();
        assert_eq!((parts.name, parts.tag, parts.digest), ("localhost:5000/tools", Some("v1"), Some(digest.as_str())));
        let parts = ImageParts::parse("registry:5000/ns/tools").unwrap();
        assert_eq!((parts.name, parts.tag, parts.digest), ("registry:5000/ns/tools", None, None));
        // Docker Hub short names stay short.
        let parts = ImageParts::parse("busybox:1.36").unwrap();
        assert_eq!((parts.name, parts.tag), ("busybox", Some("1.36")));
        assert_eq!(parts.with_digest(&digest), format!("busybox:1.36@{digest}"));
        assert_eq!(ImageParts::parse("r.io/t").unwrap().with_digest(&digest), format!("r.io/t@{digest}"));
    }

    #[test]
    fn malformed_references_are_refused_with_the_text_quoted() {
        let upper_digest = format!("tools@sha256:{}", "A".repeat(64));
        let long = "a".repeat(5000);
        for bad in [
            "",
            "Tools:v1",
            "tools:",
            "tools@sha256:abc",
            "tools:v 1",
            "/tools",
            "tools:-x",
            "example.com/a..b/c:1",
            "tools@md5:0123456789abcdef0123456789abcdef",
            upper_digest.as_str(),
            long.as_str(),
        ] {
            let error = ImageParts::parse(bad).expect_err(bad);
            assert!(error.to_string().contains("is not a valid image reference"), "{error}");
        }
    }
}
