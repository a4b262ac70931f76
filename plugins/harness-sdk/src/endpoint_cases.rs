//! Table tests of a plugin's endpoint check (native builds only): every
//! accepted base URL passes, and every refused one is refused with a message
//! that names the URL and carries the words of its fix.

use crate::{Harness, LlmEndpoint};

/// `H::check_endpoint` for a base URL (`None`: the runtime's default).
pub fn check<H: Harness>(base_url: Option<&str>) -> Result<(), String> {
    H::check_endpoint(&LlmEndpoint { base_url: base_url.map(str::to_string), model: "m".into() })
}

/// Assert the check accepts each of `urls`.
pub fn assert_accepted<H: Harness>(urls: &[Option<&str>]) {
    for url in urls {
        assert_eq!(check::<H>(*url), Ok(()), "{url:?}");
    }
}

/// Assert the check refuses each `(base URL, words the refusal must carry)`,
/// naming the URL.
pub fn assert_refused<H: Harness>(cases: &[(&str, &str)]) {
    for (url, fix) in cases {
        let err = check::<H>(Some(url)).expect_err(url);
        assert!(err.contains(url), "{url}: {err}");
        assert!(err.contains(fix), "{url}: `{fix}` missing in: {err}");
    }
}
