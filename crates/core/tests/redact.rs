//! `redact_urls`: whatever the text, no query and no userinfo of a URL in it survives, and
//! nothing panics.

use proptest::prelude::*;
use redial_core::auth::redact_urls;

#[test]
fn what_the_url_crate_leaves_raw_is_still_withheld() {
    for (text, shown) in [
        (
            "error sending request for url (https://x.mktorest.com/rest/v1/leads.json?filterType=id&filterValues=1,2&access_token=SECRET)",
            "error sending request for url (https://x.mktorest.com/rest/v1/leads.json?…)",
        ),
        ("(https://h/p?q=(a)&access_token=SECRET)", "(https://h/p?…)"),
        ("https://h/p?ids=[1]&client_secret=SECRET, then", "https://h/p?…, then"),
        ("https://user:pa,SECRET@h/p", "https://h/p"),
        ("https://user:it'sSECRET@h/p.", "https://h/p."),
        ("a path with an @: https://h/p/a@b", "a path with an @: https://h/p/a@b"),
        ("ends with ://", "ends with ://"),
        ("https://é.example/ü?ß=SECRET", "https://é.example/ü?…"),
    ] {
        assert_eq!(redact_urls(text), shown, "{text}");
    }
}

proptest! {
    #[test]
    fn no_text_makes_it_panic(text in any::<String>()) {
        let _ = redact_urls(&text);
    }

    #[test]
    fn a_query_or_userinfo_never_survives(
        before in "[^\\\\:]{0,20}",
        scheme in "[a-z][a-z0-9+.-]{0,6}",
        user in "[^\\s\"<>/?#@]{0,12}",
        host in "[a-z0-9.-]{1,20}",
        path in "(/[^\\s\"<>?#]{0,10}){0,3}",
        query in "[^\\s\"<>]{0,30}",
        after in "( [^\\\\:]{0,20})?",
    ) {
        let with_user = format!("{before}{scheme}://{user}SECRET@{host}{path}{after}");
        prop_assert!(!redact_urls(&with_user).contains("SECRET"), "{with_user}");
        let with_query = format!("{before}{scheme}://{host}{path}?{query}SECRET{query}{after}");
        prop_assert!(!redact_urls(&with_query).contains("SECRET"), "{with_query}");
    }
}
