//! Data-driven bad-input and partial-input cases: one folder each under `fixtures/cases/`.
//!
//! A case folder holds `before/` (optional: exports recorded with `baseline` first), `input/`
//! (the exports `plan` reads), `case.json` (extra arguments, the expected exit code, and text
//! stderr must contain) and `plan.json` (the whole expected plan, when the plan succeeds).
//! `UPDATE_EXPECT=1 cargo test` rewrites the `plan.json` files; review the diff.

use std::path::Path;

use crate::util::{Workdir, assert_json_file, repo};

fn run_case(name: &str) {
    let src = repo().join("fixtures/cases").join(name);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("case.json")).unwrap()).unwrap();
    let w = Workdir::new();
    w.copy_dir(&src.join("input"), "input");
    if src.join("before").is_dir() {
        w.copy_dir(&src.join("before"), "before");
        w.run(&["baseline", "--input-dir", "before", "--state", "state.db"]).expect(0);
    }
    let mut args = vec!["plan", "--input-dir", "input", "--state", "state.db", "--format", "json"];
    let extra: Vec<String> = meta["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    args.extend(extra.iter().map(String::as_str));
    let run = w.run(&args).expect(meta["exit"].as_i64().unwrap() as i32);
    for want in meta["stderr"].as_array().unwrap() {
        let want = want.as_str().unwrap();
        assert!(run.stderr.contains(want), "{name}: stderr lacks {want:?}:\n{}", run.stderr);
    }
    if run.code == 0 {
        assert_json_file(&run.json(), &Path::new("fixtures/cases").join(name).join("plan.json"));
        // Every rejected row is also in the plan, with its file and line.
        for r in run.json()["rejected"].as_array().unwrap() {
            let line = format!("{}:{}:", r["file"].as_str().unwrap(), r["line"]);
            assert!(run.stderr.contains(&line), "{name}: stderr lacks {line}");
        }
    } else {
        assert!(run.stdout.is_empty(), "{name}: a failed plan prints no plan:\n{}", run.stdout);
    }
}

macro_rules! cases {
    ($($test:ident => $dir:literal,)*) => {
        $(#[test] fn $test() { run_case($dir); })*

        /// Every folder has a test, so a new case cannot be forgotten.
        #[test]
        fn every_case_folder_has_a_test() {
            let mut listed = vec![$($dir),*];
            listed.sort();
            let mut found: Vec<String> = std::fs::read_dir(repo().join("fixtures/cases")).unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            found.sort();
            assert_eq!(found, listed);
        }
    };
}

cases! {
    invalid_email => "invalid-email",
    strict_makes_a_bad_row_fatal => "strict",
    empty_identifier => "empty-identifier",
    unterminated_quote_withholds_removals => "unterminated-quote",
    invalid_utf8 => "invalid-utf8",
    wrong_field_count => "wrong-field-count",
    conflicting_duplicate_holds_the_customer => "conflicting-duplicate",
    identical_duplicates_are_merged => "identical-duplicate",
    unknown_references => "unknown-reference",
    missing_header_is_fatal => "missing-header",
    bad_ownership_row_never_removes => "bad-email-never-removes",
    new_device_needs_a_type => "new-device-without-type",
    ownership_by_customer_id => "customer-id",
    ownership_only => "ownership-only",
    devices_only => "devices-only",
    config_remaps_headers_and_delimiter => "config-remap",
    byte_order_mark => "bom",
    // Issue 10: each way a damaged export used to remove or change what it should not.
    stray_quote_swallows_customer_rows => "stray-quote-swallows-customer-rows",
    stray_quote_cr_only_ownership => "stray-quote-cr-only-ownership",
    ownership_key_case_typo_holds_the_customer => "ownership-key-case-typo-holds-the-customer",
    ownership_lost_delimiter_withholds_removals => "ownership-lost-delimiter-withholds-removals",
    ownership_merged_rows_withhold_removals => "ownership-merged-rows-withhold-removals",
    held_customer_keeps_the_device_in_a_transfer => "held-customer-keeps-the-device-in-a-transfer",
    truncated_ownership_withholds_removals => "truncated-ownership-withholds-removals",
    header_only_ownership_is_fatal => "header-only-ownership-is-fatal",
    header_only_allowed_is_refused_by_the_guard => "header-only-allowed-is-refused-by-the-guard",
    mapped_column_missing_names_the_closest => "mapped-column-missing-names-the-closest",
    semicolon_header_names_the_delimiter => "semicolon-header-names-the-delimiter",
    invisible_characters_are_rejected => "invisible-characters-are-rejected",
    crlf_line_numbers_are_exact => "crlf-line-numbers-are-exact",
    blank_lines_after_the_header => "blank-lines-after-the-header",
}
