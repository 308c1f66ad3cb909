//! The documentation's links resolve: every relative link in README.md, RESULTS.md and docs/
//! names a file of the repository, and an anchor names a heading of the file it points into.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of `[text](target)` outside code blocks and code spans.
fn links(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            found.push(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    found
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = root();
    let mut pages = vec![root.join("README.md"), root.join("RESULTS.md")];
    let mut docs: Vec<PathBuf> =
        std::fs::read_dir(root.join("docs")).unwrap().map(|entry| entry.unwrap().path()).collect();
    docs.sort();
    pages.extend(docs.into_iter().filter(|path| path.extension().is_some_and(|e| e == "md")));
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            let name = format!("{}: {target}", page.strip_prefix(&root).unwrap_or(page).display());
            if !path.exists() {
                broken.push(format!("{name} (no such file)"));
            } else if !fragment.is_empty() {
                let heads = path
                    .extension()
                    .is_some_and(|e| e == "md")
                    .then(|| anchors(&std::fs::read_to_string(&path).unwrap()));
                if !heads.is_some_and(|heads| heads.iter().any(|h| h == fragment)) {
                    broken.push(format!("{name} (no such heading)"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links found: the scanner is broken");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_follow_githubs_rule() {
    assert_eq!(anchor(" Against PyTorch"), "against-pytorch");
    assert_eq!(anchor("Frankle & Carbin (2019): the lottery ticket"), "frankle--carbin-2019-the-lottery-ticket");
    assert_eq!(links("see [a](x.md#b) and `[c](not)` [d](y.md)"), vec!["x.md#b", "y.md"]);
}

/// The README is the front door (#31): short, the two set-up commands in its first code block,
/// and every page of docs/ reachable from it.
#[test]
fn the_readme_is_short_starts_with_the_set_up_and_links_every_page() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; move reference material to docs/");
    let first_block: Vec<&str> = readme.split("```").nth(1).unwrap().lines().skip(1).collect();
    assert!(first_block[0].starts_with("cargo run --release -- run configs/"), "{first_block:?}");
    assert!(first_block[1].starts_with("cargo test --release"), "{first_block:?}");
    let linked = links(&readme);
    let mut unlinked = Vec::new();
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") && !linked.iter().any(|l| l.split('#').next() == Some(&format!("docs/{name}"))) {
            unlinked.push(name);
        }
    }
    assert!(unlinked.is_empty(), "docs/ pages the README does not link: {unlinked:?}");
}
