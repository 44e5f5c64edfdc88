//! AWS Lambda entry points over the agent's libraries.
//!
//! - `silt-http` serves the HTTP API (`docs/http-api.md`) behind a function
//!   URL or API Gateway: it loads the metadata (checkpoint, then the log
//!   since) at cold start, keeps it current while warm, and writes and
//!   reads like an agent (segment PUT, commit through etcd, ranged GETs).
//!   No agent needs to be running.
//! - `silt-jobs` runs one pass of each tiering job per invocation (an
//!   EventBridge schedule), under the same locks as agents.
//!
//! Both read the agent's settings from `SILT_*` environment variables.

use silt_agent::config::Settings;

/// PEM text in these variables (a function has no files of its own) is
/// written to files under the temporary directory at cold start, and the
/// matching `*_FILE` setting points at them.
const PEM_VARIABLES: [(&str, &str); 3] = [
    ("SILT_ETCD_CA_PEM", "SILT_ETCD_CA_FILE"),
    ("SILT_ETCD_CERT_PEM", "SILT_ETCD_CERT_FILE"),
    ("SILT_ETCD_KEY_PEM", "SILT_ETCD_KEY_FILE"),
];

/// The agent's settings from `SILT_*` environment variables, checked as an
/// agent's are.
pub fn settings() -> anyhow::Result<Settings> {
    let dir = std::env::temp_dir().join("silt-pki");
    let env = with_pem_files(std::env::vars().collect(), &dir)?;
    let s = Settings::load(None, env.into_iter(), &[])?;
    s.validate_agent()?;
    Ok(s)
}

/// `vars` with every PEM variable replaced by its file setting.
fn with_pem_files(
    vars: Vec<(String, String)>,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<(String, String)>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = Vec::with_capacity(vars.len());
    for (k, v) in vars {
        let Some((_, file_key)) = PEM_VARIABLES.iter().find(|(pem, _)| *pem == k) else {
            out.push((k, v));
            continue;
        };
        std::fs::create_dir_all(dir)?;
        let path = dir.join(k.to_ascii_lowercase());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{k}: cannot write {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut f, v.as_bytes())?;
        out.push((file_key.to_string(), path.display().to_string()));
    }
    Ok(out)
}

/// Logs as JSON lines (CloudWatch), filtered by `SILT_LOG` (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_variables_become_files_the_settings_point_at() {
        let dir = tempfile::tempdir().unwrap();
        let vars = vec![
            ("SILT_ETCD".to_string(), "https://e:2379".to_string()),
            (
                "SILT_ETCD_CA_PEM".to_string(),
                "-----BEGIN CERTIFICATE-----\n".to_string(),
            ),
        ];
        let out = with_pem_files(vars, dir.path()).unwrap();
        assert_eq!(out[0].0, "SILT_ETCD");
        assert_eq!(out[1].0, "SILT_ETCD_CA_FILE");
        assert_eq!(
            std::fs::read_to_string(&out[1].1).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out[1].1).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
