//! YAML error messages shared by every reader of YAML (the config, kubeconfigs,
//! RenewRevocation files): one line with line and column, and no source snippet.

/// A YAML error as one line with its line and column, without saphyr's source snippet
/// (which would print config values, maybe secrets, into logs).
pub fn render_error(e: &serde_saphyr::Error) -> String {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = e.render_with_options(opts);
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
