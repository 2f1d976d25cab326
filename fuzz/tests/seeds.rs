//! Replays the seed corpus through every harness on the stable toolchain (no libFuzzer):
//! `cargo test` in `fuzz/`. Also checks that the structured seeds decode as they were meant to.

use std::fs;
use std::path::Path;

use redial_vendors::Vendor;

/// A harness: `redial_fuzz::<target>`.
type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 8] = [
    ("retry_after", redial_fuzz::retry_after),
    ("problem", redial_fuzz::problem),
    ("marketo", redial_fuzz::marketo),
    ("adobe", redial_fuzz::adobe),
    ("responsys", redial_fuzz::responsys),
    ("genesys_soap", redial_fuzz::genesys_soap),
    ("logins", redial_fuzz::logins),
    ("classify_decide", redial_fuzz::classify_decide),
];

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_runs_through_its_harness() {
    for (target, run) in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 4, "{target}: {} seeds", seeds.len());
        for (name, data) in seeds {
            eprintln!("{target}/{name}");
            run(&data);
        }
    }
}

#[test]
fn structured_seeds_decode_as_meant() {
    let seeds = seeds("classify_decide");
    let get = |name: &str| {
        let (_, data) = seeds.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no seed {name}"));
        redial_fuzz::run_classify_decide(data).unwrap()
    };
    let (v, s, c, _) = get("marketo_606");
    assert_eq!((v, s.as_u16(), c.code()), (Vendor::Marketo, 200, Some("606")));
    let (v, s, c, _) = get("adobe_207");
    assert_eq!((v, s.as_u16(), c.code()), (Vendor::AdobeEdge, 207, Some("EXEG-0201-503")));
    let (v, _, c, _) = get("responsys_polling");
    assert_eq!((v, c.code()), (Vendor::Responsys, Some("ASYNC_REQUEST_EXPIRED")));
    let (v, s, c, _) = get("genesys_internal_error");
    assert_eq!((v, s.as_u16(), c.code()), (Vendor::GenesysEngage, 500, Some("INTERNAL_ERROR")));
    assert_eq!(c.advice.action(), redial_core::Action::Reconcile, "{}", c.reason);
    let (v, s, c, _) = get("generic_problem_503");
    assert_eq!((v, s.as_u16()), (Vendor::Generic, 503));
    assert_eq!(c.hint.map(|h| h.delay.as_secs()), Some(120));
}
