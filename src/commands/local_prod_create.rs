//! `kinfra local-prod create [--branch B]` — an independent clone next to the main
//! repository, on slot 0.

use std::path::Path;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::git;
use crate::output;
use crate::registry::{self, Entry, canonical};
use crate::timefmt;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Branch to check out (default: the repository's default branch).
    #[arg(long)]
    pub branch: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let main = repo.main_root.clone();
    let path = config.local_prod_path(&main);
    let id = config.local_prod_id.clone();
    let registry = ctx.registry()?;
    if let Some(lp) = &registry.local_prod {
        return Err(already(lp));
    }
    let origin = git::origin_url(&main)?;
    // A clone left by a create that was killed half-way is adopted, not refused.
    let resume = path.exists() && is_orphan_clone(config, &main, &path, origin.as_deref())?;
    if path.exists() && !resume {
        return Err(Error::failure(format!("`{}` already exists", path.display())).hint(
            "if it is a clone of the project, run `kinfra local-prod init` inside it; otherwise move it away",
        ));
    }
    let branch = match &args.branch {
        Some(b) => {
            if !git::local_branch_exists(&main, b)? {
                return Err(Error::usage(format!(
                    "branch `{b}` does not exist in `{}`",
                    main.display()
                )));
            }
            b.clone()
        }
        None => git::default_branch(&main)?.ok_or_else(|| {
            Error::usage("cannot tell the repository's default branch").hint("pass --branch")
        })?,
    };
    if resume {
        output::note(&format!(
            "resuming an interrupted create: adopting the existing clone `{}`",
            path.display()
        ));
    } else {
        super::check_no_leftovers(&id)?;
    }

    let mut made = false;
    let result = registry::update(
        &config.registry_path,
        &config.registry_lock_path(),
        |reg| -> Result<()> {
            if let Some(lp) = &reg.local_prod {
                return Err(already(lp));
            }
            if path.exists() && !resume {
                return Err(Error::failure(format!(
                    "`{}` already exists",
                    path.display()
                )));
            }
            super::check_ports_free(config, reg, 0)?;
            if !resume {
                output::note(&format!(
                    "cloning `{}` ({branch}) to `{}`",
                    main.display(),
                    path.display()
                ));
                made = true;
                git::clone(&main, &path, Some(&branch), origin.as_deref())
                    .map_err(|e| Error::usage(format!("git could not clone: {e}")))?;
            }
            crate::crashpoint::hit("local-prod-create:after-clone");
            super::copy_files(config, &path);
            let created_at = timefmt::now_iso();
            super::write_env_file(config, &path, &id, 0, &created_at)?;
            crate::crashpoint::hit("local-prod-create:after-env-file");
            reg.local_prod = Some(Entry {
                instance_id: id.clone(),
                slot: 0,
                path: path.display().to_string(),
                created_at,
                is_worktree: false,
                parent_repo: Some(main.display().to_string()),
            });
            Ok(())
        },
    );
    if let Err(e) = result {
        if made && path.exists() {
            // The directory did not exist before this command: removing our own
            // partial clone loses nothing.
            let _ = std::fs::remove_dir_all(&path);
        }
        return Err(e);
    }
    super::print_summary(config, "created local-prod", &id, &path, 0);
    output::note(&format!("  {:<12}{branch}", "Branch:"));
    output::data(&path.display().to_string());
    Ok(0)
}

/// Whether `path` is what a create killed half-way leaves: an independent clone (not a
/// linked worktree) with the main repository's origin, and no env file or one naming
/// local-prod's id.
fn is_orphan_clone(
    config: &crate::config::Config,
    main: &Path,
    path: &Path,
    origin: Option<&str>,
) -> Result<bool> {
    let is_real_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    if !is_real_dir {
        return Ok(false);
    }
    let Some(info) = git::repo_info(path)? else {
        return Ok(false);
    };
    if info.is_linked_worktree || canonical(&info.toplevel) != canonical(path) {
        return Ok(false);
    }
    // `git clone` points origin at the main repository until kinfra re-points it.
    let main_path = main.display().to_string();
    let found = git::origin_url(path)?;
    if found.as_deref() != origin && found.as_deref() != Some(main_path.as_str()) {
        return Ok(false);
    }
    let env_path = path.join(&config.env_file);
    Ok(!env_path.exists()
        || crate::envfile::EnvFile::load(&env_path)
            .is_ok_and(|e| e.get("INSTANCE_ID") == Some(config.local_prod_id.as_str())))
}

fn already(lp: &Entry) -> Error {
    Error::failure(format!(
        "local-prod is already registered: `{}` at `{}`",
        lp.instance_id, lp.path
    ))
    .hint("there is only one local-prod; `kinfra local-prod destroy` it first")
}
