//! `keycrm-analytics project add | list | settings`: the same functions as the API's, acting as
//! the command line (`cli` in the audit log).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use ksa_query_api::ApiError;
use ksa_query_api::admin::projects::{NewProjectRequest, create_project, webhook_url};
use ksa_query_api::admin::settings;
use ksa_state::StateStore;
use ksa_state::admin::Actor;

pub struct AddProject {
    pub slug: String,
    pub name: String,
    pub timezone: String,
    pub allow: Vec<String>,
}

/// The first line of an API error, as a command-line error (naming the option or field).
pub fn api_error(error: ApiError) -> anyhow::Error {
    let mut message = match &error.field {
        Some(field) => format!("{field}: {}", error.message),
        None => error.message.clone(),
    };
    for field in &error.errors {
        message.push_str(&format!("\n  {}: {}", field.field, field.message));
    }
    anyhow::anyhow!(message)
}

/// Creates a project and prints its webhook URL with the secret, which is shown this once.
pub async fn add<S: StateStore>(state: &S, project: AddProject, public_url: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = NewProjectRequest { slug: project.slug, name: project.name, timezone: project.timezone, allowed_cidrs: project.allow };
    let (created, secret) = create_project(state, &Actor::cli(), request).await.map_err(|e| {
        let field = e.field.clone().unwrap_or_default();
        let flag = match field.as_str() {
            "allowed_cidrs" => "--allow".to_owned(),
            f if f.starts_with("allowed_cidrs[") => "--allow".to_owned(),
            f => format!("--{f}"),
        };
        anyhow::anyhow!("{flag}: {}", e.message)
    })?;
    writeln!(out, "project `{}` created (id {})", created.slug, created.id)?;
    writeln!(out, "webhook URL: {}", webhook_url(public_url, &created.slug, Some(&secret)))?;
    writeln!(out, "The secret is shown only now and stored only as a digest; keep the URL safe.")?;
    Ok(())
}

pub async fn list<S: StateStore>(state: &S, public_url: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let projects = state.projects().await?;
    if projects.is_empty() {
        writeln!(out, "no projects yet: add one with `keycrm-analytics project add --slug SLUG --name NAME`")?;
    }
    for p in projects {
        let active = if p.is_active { "active" } else { "inactive" };
        writeln!(out, "{}\t{}\t{}\t{}\t{}\t{}", p.id, p.slug, p.name, p.timezone, active, webhook_url(public_url, &p.slug, None))?;
    }
    Ok(())
}

/// Validates a settings document and stores it as the project's next revision.
pub async fn put_settings<S: StateStore>(state: &S, slug: &str, file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading settings {}", file.display()))?;
    let project = state.project_by_slug(slug).await?.with_context(|| format!("--slug: no project `{slug}`"))?;
    let revision = match settings::store(state, &Actor::cli(), &project, &text, None).await {
        Ok(revision) => revision,
        Err(error) if !error.errors.is_empty() => {
            let listed: Vec<String> = error.errors.iter().map(|e| format!("  {}: {}", e.field, e.message)).collect();
            bail!("settings {} are invalid:\n{}", file.display(), listed.join("\n"));
        }
        Err(error) => return Err(api_error(error)),
    };
    writeln!(
        out,
        "settings of `{slug}` stored as revision {revision}; a running processor recomputes the project's history in the background"
    )?;
    Ok(())
}
