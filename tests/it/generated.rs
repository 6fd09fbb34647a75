//! The shipped completion scripts and man page are what the binary generates.

use std::path::Path;

use crate::support;

fn generated(args: &[&str]) -> String {
    let output = support::segrelay().args(args).output().unwrap();
    assert!(output.status.success(), "segrelay {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

fn shipped(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn completions_match_the_binary() {
    for (shell, file) in [
        ("bash", "completions/segrelay.bash"),
        ("zsh", "completions/_segrelay"),
        ("fish", "completions/segrelay.fish"),
        ("powershell", "completions/_segrelay.ps1"),
        ("elvish", "completions/segrelay.elv"),
    ] {
        assert_eq!(
            generated(&["completions", shell]),
            shipped(file),
            "{file} is stale: regenerate it with `segrelay completions {shell} > {file}`"
        );
    }
}

#[test]
fn man_pages_match_the_binary() {
    assert_eq!(
        generated(&["man"]),
        shipped("doc/segrelay.1"),
        "doc/segrelay.1 is stale: regenerate the pages with `segrelay man --out-dir doc`"
    );
    let dir = tempfile::tempdir().unwrap();
    generated(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    let pages = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let written = pages(dir.path());
    assert!(
        written.contains(&"segrelay-send.1".to_owned()),
        "{written:?}"
    );
    assert_eq!(
        written,
        pages(&Path::new(env!("CARGO_MANIFEST_DIR")).join("doc")),
        "doc/ is stale: regenerate it with `rm doc/*.1; segrelay man --out-dir doc`"
    );
    for page in &written {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(page)).unwrap(),
            shipped(&format!("doc/{page}")),
            "doc/{page} is stale: regenerate the pages with `segrelay man --out-dir doc`"
        );
    }
}

/// The pages have the sections a man page is read for, and segrelay.toml(5)
/// lists every setting of every type.
#[test]
fn man_pages_have_exit_status_environment_files_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    generated(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    for name in ["segrelay.1", "segrelay-send.1", "segrelay-check.1"] {
        let text = page(name);
        for needle in [
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH EXAMPLES",
            "SEGRELAY_CONFIG",
            "SEGRELAY_DESTINATION",
            "XDG_CONFIG_HOME",
            "ORB_API_KEY",
        ] {
            assert!(text.contains(needle), "{name} lacks {needle}");
        }
        assert!(!text.contains(".SH EXTRA"), "{name}");
    }
    let check_status = page("segrelay-check.1");
    let check_status = check_status.split(".SH ENVIRONMENT").next().unwrap();
    assert!(!check_status.contains(".TP\n3\n"), "check never exits 3");
    let settings = page("segrelay.toml.5");
    assert!(
        !settings.contains("segrelay.toml(5)"),
        "segrelay.toml(5) refers to itself"
    );
    assert!(page("segrelay-send.1").contains("Its format is described in segrelay.toml(5)."));
    for key in [
        "external_customer_id_field",
        "kable_client_id",
        "gzip_requests",
        "default_destination",
    ] {
        assert!(
            settings.contains(&key.replace('-', "\\-")),
            "segrelay.toml.5 lacks {key}"
        );
    }
}
