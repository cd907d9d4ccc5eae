//! Image references: validated against the distribution grammar (which refuses
//! `example.com/a..b/c:1` and uppercase repositories) and oci-client's digest rules, but kept as
//! the user wrote them: a normalised form (`docker.io/library/…`) is never what gets injected.
//!
//! The grammar is checked by hand rather than with oci-client's `Reference`: that compiles
//! oci-spec's reference regex on first use, about 245 M instructions (tens of milliseconds) at
//! every start, which was most of the time from start to ready. The tests hold this parser to
//! `Reference` on generated references (it accepts the same, except tags outside ASCII, which
//! the regex's Unicode `\w` lets through and Docker's grammar does not).
//!
//! The config's `tools.image`, the pod's `dragonfly.io/tools-image` override, the pinner and
//! `serve`'s start-up all read references here.

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
        if text.is_empty() {
            return Err(bad("it is empty".to_owned()));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (text, None),
        };
        if let Some(digest) = digest {
            check_digest(digest).map_err(|why| bad(why.to_owned()))?;
        }
        // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|why| bad(why.to_owned()))?;
        }
        check_name(name).map_err(|why| bad(why.to_owned()))?;
        Ok(ImageParts { name, tag, digest })
    }

    /// The registry and repository as registries address them (Docker Hub's `docker.io` and
    /// `library/` filled in), as oci-client's parser splits them, without its regex.
    pub fn registry_and_repository(&self) -> (String, String) {
        let (registry, repository) = match self.name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
            _ => ("docker.io", self.name),
        };
        let registry = if registry == "index.docker.io" { "docker.io" } else { registry };
        match registry == "docker.io" && !repository.contains('/') {
            true => (registry.to_owned(), format!("library/{repository}")),
            false => (registry.to_owned(), repository.to_owned()),
        }
    }

    /// oci-client's reference for these parts (the tag `latest` when there is neither tag nor
    /// digest, as its parser does). The server feature's: the engine alone has no registry client.
    #[cfg(feature = "server")]
    pub fn reference(&self) -> oci_client::Reference {
        let (registry, repository) = self.registry_and_repository();
        match (self.tag, self.digest) {
            (Some(tag), Some(digest)) => {
                oci_client::Reference::with_tag_and_digest(registry, repository, tag.to_owned(), digest.to_owned())
            }
            (None, Some(digest)) => oci_client::Reference::with_digest(registry, repository, digest.to_owned()),
            (tag, None) => oci_client::Reference::with_tag(registry, repository, tag.unwrap_or("latest").to_owned()),
        }
    }

    /// The same name and tag, pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> String {
        match self.tag {
            Some(tag) => format!("{}:{tag}@{digest}", self.name),
            None => format!("{}@{digest}", self.name),
        }
    }
}

/// `sha256:`, `sha384:` or `sha512:` and that many lowercase hex digits (oci-client's rule; the
/// grammar allows other algorithms, which nothing pulls by).
fn check_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, hex) = digest.split_once(':').ok_or("the digest has no algorithm")?;
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("the digest's algorithm is not sha256, sha384 or sha512"),
    };
    if hex.len() != length {
        return Err("the digest's length does not fit its algorithm");
    }
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("the digest must be lowercase hex");
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [] => Err("the tag is empty"),
        [first, ..] if !word(*first) => Err("a tag starts with a letter, a digit or '_'"),
        bytes if bytes.len() > 128 => Err("the tag is longer than 128 characters"),
        bytes if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => {
            Err("a tag holds only letters, digits, '_', '.' and '-'")
        }
        _ => Ok(()),
    }
}

/// `[domain/]component(/component)*`, and the repository at most 255 characters as registries
/// count it (Docker Hub's one-word names with `library/` in front).
fn check_name(name: &str) -> Result<(), &'static str> {
    let components: Vec<&str> = name.split('/').collect();
    let paths = |parts: &[&str]| parts.iter().all(|c| path_component(c));
    let valid = match components.as_slice() {
        [first, rest @ ..] if !rest.is_empty() && domain(first) && paths(rest) => true,
        all => paths(all),
    };
    if !valid {
        return Err("the repository holds only lowercase letters, digits and single separators between them");
    }
    // Which first component is a registry, as Docker decides it (not how the grammar matched).
    let first = components[0];
    let registry = components.len() > 1 && (first.contains(['.', ':']) || first == "localhost");
    let repository = if registry { &name[first.len() + 1..] } else { name };
    let hub = !registry || first == "docker.io" || first == "index.docker.io";
    let length = repository.len() + if hub && !repository.contains('/') { "library/".len() } else { 0 };
    if length > 255 {
        return Err("the repository name is longer than 255 characters");
    }
    Ok(())
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any run of `-`.
fn path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    bytes
        .split(alnum)
        .all(|separator| matches!(separator, b"" | b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-'))
}

/// `label(.label)*(:port)?`, a label being letters, digits and inner `-`.
fn domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    host.split('.').all(label) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
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

    /// oci-client's `Reference` is the oracle: it accepts exactly what this parser accepts, but
    /// for an uppercase digest (refused here: registries compare lowercase) and overlong text.
    #[test]
    #[cfg(feature = "server")]
    fn the_parser_agrees_with_oci_clients_reference() {
        use proptest::strategy::{Strategy, ValueTree};
        let strategy = proptest::prop_oneof![
            "[a-zA-Z0-9._:/@-]{1,24}",
            "([a-zA-Z0-9.-]{1,8}(:[0-9]{0,4})?/)?[a-z0-9._-]{1,10}(/[a-zA-Z0-9._-]{1,6}){0,2}(:[a-zA-Z0-9._-]{0,10})?",
            "[a-z0-9]{1,6}(/[a-z0-9]{1,4})?(:[a-z0-9]{1,4})?@(sha256|sha512|md5|SHA256):[0-9a-fA-F]{60,66}",
            "[a-z]{1,3}((__|_|\\.|-{1,3}|\\.\\.|___|-_)[a-z]{1,3}){0,3}",
            "(localhost|docker.io|index.docker.io|[a-z]{1,4})/[a-z]{240,260}",
            "[a-z]{240,260}",
            "[a-z]{1,4}:[a-zA-Z0-9_][a-zA-Z0-9_.-]{120,130}",
        ];
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut accepted = 0;
        for _ in 0..10_000 {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            let oracle = oci_client::Reference::try_from(text.as_str()).is_ok()
                && !text.split_once('@').is_some_and(|(_, d)| d.chars().any(|c| c.is_ascii_uppercase()));
            assert_eq!(ImageParts::parse(&text).is_ok(), oracle, "{text:?}: {:?}", ImageParts::parse(&text));
            accepted += usize::from(oracle);
            if let (Ok(parts), Ok(theirs)) = (ImageParts::parse(&text), oci_client::Reference::try_from(text.as_str()))
            {
                let ours = parts.reference();
                let fields = |r: &oci_client::Reference| {
                    (
                        r.registry().to_owned(),
                        r.repository().to_owned(),
                        r.tag().map(str::to_owned),
                        r.digest().map(str::to_owned),
                    )
                };
                assert_eq!(fields(&ours), fields(&theirs), "{text:?}");
            }
        }
        // Both sides of the line are exercised.
        assert!((2_000..8_000).contains(&accepted), "{accepted} of 10,000 accepted");
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
