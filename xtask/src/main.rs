//! `cargo run -p xtask -- man DIR` writes kube-cert-agent.8; `... completions DIR` writes
//! the bash, zsh and fish completions. Both come from the clap definition of the real
//! command line (`kube_cert_agent::cli::Cli`), so they cannot drift from it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

const NAME: &str = "kube-cert-agent";

fn command() -> clap::Command {
    kube_cert_agent::cli::Cli::command().name(NAME)
}

/// The man page, section 8 (a system administration daemon), with the subcommands and the
/// files the agent uses.
fn man_page(out: &Path) -> anyhow::Result<PathBuf> {
    let cmd = command();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("{NAME} {}", env!("CARGO_PKG_VERSION")));
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    // The commands, with their synopsis and options here (not in separate pages).
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    buf.extend_from_slice(b".SH COMMANDS\n");
    for sub in &subs {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        buf.extend_from_slice(
            format!(".TP\n\\fB{}\\fR\n{}\n", roff(sub.get_name()), roff(&about)).as_bytes(),
        );
    }
    for sub in subs {
        let sub_name = sub.get_name().to_string();
        buf.extend_from_slice(format!(".SH \"{} {}\"\n", NAME, sub_name).as_bytes());
        // A one-shot build tool: leaking the name is fine (clap wants a &'static str here).
        let full: &'static str = Box::leak(format!("{NAME} {sub_name}").into_boxed_str());
        let sub_man = clap_mangen::Man::new(sub.clone().name(full));
        let mut s = Vec::new();
        sub_man.render_synopsis_section(&mut s)?;
        sub_man.render_options_section(&mut s)?;
        // Demote the sub-page's own section headers to subsection headers.
        let text = String::from_utf8(s)?.replace(".SH ", ".SS ");
        buf.extend_from_slice(text.as_bytes());
    }
    buf.extend_from_slice(FILES_SECTION.as_bytes());
    man.render_version_section(&mut buf)?;
    let path = out.join(format!("{NAME}.8"));
    std::fs::write(&path, buf).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Escape text for a roff line: hyphens as \- (so that they copy and search as '-'),
/// backslashes, and a leading control character.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with(['.', '\'']) {
        format!("\\&{s}")
    } else {
        s
    }
}

const FILES_SECTION: &str = r#".SH FILES
.TP
\fI/etc/kube\-cert\-agent/config.yaml\fR
The configuration (unknown keys are an error).
.TP
\fI/etc/kube\-cert\-agent/revocations.d/\fR
RenewRevocation documents.
.TP
\fI/var/lib/kube\-cert\-agent/\fR
State: last result and next deadline per certificate.
.TP
\fI/usr/share/kube\-cert\-agent/crds/\fR
The RenewRevocation CustomResourceDefinition.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Rotate every managed certificate now (\fBsystemctl reload kube\-cert\-agent\fR).
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBkubeadm\fR(1)
"#;

fn completions(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = command();
        let path = clap_complete::generate_to(shell, &mut cmd, NAME, out)
            .with_context(|| format!("{shell} completions into {}", out.display()))?;
        if shell == Shell::Bash {
            let text = std::fs::read_to_string(&path)?;
            std::fs::write(&path, fix_bash_states(&text))
                .with_context(|| format!("write {}", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// clap_complete's bash script spells a subcommand's state two ways for a hyphenated bin
/// name: the loop builds `kube__cert__agent__subcmd__check`, the case arms say
/// `kube__subcmd__cert__subcmd__agent__subcmd__check`, so no subcommand option ever
/// completes (clap-rs/clap#6421). Spell the arms as the loop does.
fn fix_bash_states(script: &str) -> String {
    let fn_name = NAME.replace('-', "__");
    let broken = NAME.replace('-', "__subcmd__");
    script.replace(
        &format!("{broken}__subcmd__"),
        &format!("{fn_name}__subcmd__"),
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.as_slice() {
        [what, dir] if what == "man" || what == "completions" => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create {}", dir.display()))
                .and_then(|()| match what.as_str() {
                    "man" => man_page(&dir).map(|p| vec![p]),
                    _ => completions(&dir),
                })
        }
        _ => Err(anyhow::anyhow!(
            "usage: xtask man DIR | xtask completions DIR"
        )),
    };
    match res {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What bash offers for `words` with the cursor on the last one, from the generated
    /// script sourced in a real bash.
    fn complete(script: &Path, words: &[&str]) -> Vec<String> {
        let cword = words.len() - 1;
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let prog = format!(
            "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n\
             _kube__cert__agent kube-cert-agent '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display(),
            quoted.join(" "),
            words[cword],
            words[cword - 1],
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "-c", &prog])
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn bash_completes_subcommand_options() {
        let dir = std::env::temp_dir().join(format!("xtask-completions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = completions(&dir).unwrap();
        let bash = written
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "bash"))
            .unwrap();
        assert_eq!(
            complete(bash, &["kube-cert-agent", "check", "--o"]),
            ["--output"]
        );
        assert!(complete(bash, &["kube-cert-agent", "rotate", "--"]).contains(&"--dry-run".into()));
        assert!(complete(bash, &["kube-cert-agent", "ch"]).contains(&"check".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
