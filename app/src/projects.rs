//! `keycrm-analytics project add | list | settings`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use ksa_ingest::Cidr;
use ksa_ingest::secret::secret_digest;
use ksa_schemas::ProjectSettings;
use ksa_state::{NewProject, StateError, StateStore};

pub struct AddProject {
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub allow: Vec<String>,
}

/// Creates a project and prints its webhook URL with the secret, which is shown this once.
pub async fn add<S: StateStore>(state: &S, project: AddProject, base_url: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let slug = project.slug.trim().to_string();
    if slug.is_empty() || slug.len() > 64 || !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        bail!("--slug: {slug:?} must be 1–64 characters of a–z, 0–9 and '-'");
    }
    if project.timezone.parse::<chrono_tz::Tz>().is_err() {
        bail!("--timezone: {:?} is not an IANA time zone (for example Europe/Kyiv)", project.timezone);
    }
    for cidr in &project.allow {
        if Cidr::parse(cidr).is_none() {
            bail!("--allow: {cidr:?} is not an IP address or CIDR");
        }
    }
    let secret = new_secret()?;
    let created = state
        .create_project(NewProject {
            slug: slug.clone(),
            name: project.name,
            timezone: project.timezone,
            webhook_secret_hash: secret_digest(&secret),
            allowed_cidrs: project.allow,
        })
        .await
        .map_err(|err| match err {
            StateError::SlugTaken(slug) => anyhow::anyhow!("--slug: a project `{slug}` already exists"),
            other => anyhow::Error::new(other),
        })?;
    writeln!(out, "project `{}` created (id {})", created.slug, created.id)?;
    writeln!(out, "webhook URL: {base_url}/webhooks/keycrm/{}?token={secret}", created.slug)?;
    writeln!(out, "The secret is shown only now and stored only as a digest; keep the URL safe.")?;
    Ok(())
}

pub async fn list<S: StateStore>(state: &S, base_url: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let projects = state.projects().await?;
    if projects.is_empty() {
        writeln!(out, "no projects yet: add one with `keycrm-analytics project add --slug SLUG --name NAME`")?;
    }
    for p in projects {
        let active = if p.is_active { "active" } else { "inactive" };
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{base_url}/webhooks/keycrm/{}?token=<secret>",
            p.id, p.slug, p.name, p.timezone, active, p.slug
        )?;
    }
    Ok(())
}

/// Validates a settings document and stores it as the project's next revision.
pub async fn put_settings<S: StateStore>(state: &S, slug: &str, file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading settings {}", file.display()))?;
    ProjectSettings::from_json(&text).with_context(|| format!("settings {}", file.display()))?;
    let project = state.project_by_slug(slug).await?.with_context(|| format!("--slug: no project `{slug}`"))?;
    let revision = state.put_settings(project.id, &text, "cli").await?;
    writeln!(
        out,
        "settings of `{slug}` stored as revision {revision}; a running processor recomputes the project's history in the background"
    )?;
    Ok(())
}

/// 32 random bytes, hex: the webhook secret.
fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
