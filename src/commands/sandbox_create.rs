//! `kinfra sandbox create NAME [--branch B] [--slot N]`

use std::path::{Path, PathBuf};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::git::{self, BranchSource};
use crate::output;
use crate::registry::{self, Entry};
use crate::slug;
use crate::timefmt;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Sandbox name; slugified into the directory name (`My Feature!` → `my-feature`).
    pub name: String,
    /// Check out this branch (created from the current HEAD if it does not exist).
    /// Default: a branch named after the sandbox directory.
    #[arg(long)]
    pub branch: Option<String>,
    /// Use this slot instead of the lowest free one.
    #[arg(long, allow_negative_numbers = true)]
    pub slot: Option<i64>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let slug = slug::slugify(&args.name);
    if slug.is_empty() {
        return Err(Error::usage(format!(
            "`{}` has no letters or digits to make a sandbox name from",
            args.name
        ))
        .hint("use a name like `my-feature`"));
    }
    let id = format!("{}{slug}", config.sandbox_prefix);
    if !slug::is_valid_project_name(&id) {
        return Err(Error::usage(format!(
            "`{id}` is not a valid compose project name (at most {} characters of a-z, 0-9, `-`, `_`)",
            slug::MAX_PROJECT_NAME
        ))
        .hint("use a shorter name"));
    }
    let wanted_slot = args
        .slot
        .map(|s| super::sandbox_slot(s, config))
        .transpose()?;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let main = repo.main_root.clone();
    let path = config.sandbox_dir(&main, &slug);
    let branch = args.branch.clone().unwrap_or_else(|| id.clone());
    if !git::is_valid_branch_name(&main, &branch)? {
        return Err(Error::usage(format!(
            "`{branch}` is not a valid branch name"
        )));
    }
    // A worktree left by a create that was killed half-way is adopted, not refused.
    let registered = {
        let reg = ctx.registry()?;
        reg.at_path(&path).is_some() || reg.sandbox(&id).is_some()
    };
    let resume = path.exists()
        && !registered
        && super::is_orphan_worktree(config, &main, &path, &id, &branch)?;
    if path.exists() && !resume {
        return Err(exists_error(&path));
    }
    if resume {
        output::note(&format!(
            "resuming an interrupted create: adopting the existing worktree `{}`",
            path.display()
        ));
    } else {
        super::check_no_leftovers(&id)?;
    }

    // Everything from slot choice to registration happens under the registry lock, so
    // concurrent creates never share a slot and never lose an entry.
    let mut made: Option<PathBuf> = None;
    let result = registry::update(
        &config.registry_path,
        &config.registry_lock_path(),
        |reg| -> Result<u32> {
            if path.exists() && (!resume || reg.at_path(&path).is_some()) {
                return Err(exists_error(&path));
            }
            if let Some(e) = reg.sandbox(&id) {
                return Err(Error::failure(format!(
                    "`{id}` is already registered (slot {}, `{}`)",
                    e.slot, e.path
                ))
                .hint(format!(
                    "`kinfra sandbox destroy {id}` removes the old entry"
                )));
            }
            let slot = super::allocate_slot(reg, config, wanted_slot)?;
            super::check_ports_free(config, reg, slot)?;

            if !resume {
                add_worktree(repo, &main, &path, &branch)?;
                made = Some(path.clone());
                crate::crashpoint::hit("create:after-worktree");
            }

            super::copy_files(config, &path);
            let created_at = timefmt::now_iso();
            super::write_env_file(config, &path, &id, slot, &created_at)?;
            crate::crashpoint::hit("create:after-env-file");
            reg.insert_sandbox(Entry {
                instance_id: id.clone(),
                slot,
                path: path.display().to_string(),
                created_at,
                is_worktree: true,
                parent_repo: Some(main.display().to_string()),
            });
            Ok(slot)
        },
    );
    let slot = match result {
        Ok(slot) => slot,
        Err(e) => {
            if let Some(p) = made {
                // No half-created instance: the worktree we just made goes again.
                if let Err(undo) = git::worktree_remove(&main, &p) {
                    output::warn(&format!(
                        "could not remove the new worktree `{}` again: {undo}",
                        p.display()
                    ));
                }
            }
            return Err(e);
        }
    };
    super::print_summary(config, "created sandbox", &id, &path, slot);
    output::note(&format!("  {:<12}{branch}", "Branch:"));
    output::hint(&format!(
        "cd {} && kinfra sandbox up",
        crate::process::shell_quote(&path.display().to_string())
    ));
    output::data(&path.display().to_string());
    Ok(0)
}

/// `git worktree add` of `branch` (checked out if it exists, else created from the
/// current HEAD).
fn add_worktree(repo: &git::RepoInfo, main: &Path, path: &Path, branch: &str) -> Result<()> {
    let source = if git::local_branch_exists(main, branch)?
        || git::ref_exists(main, &format!("refs/remotes/origin/{branch}"))?
    {
        BranchSource::Existing(branch.to_string())
    } else {
        let start = git::head_commit(&repo.toplevel)?.ok_or_else(|| {
            Error::usage("the repository has no commits yet")
                .hint("commit something first: a worktree needs a commit to check out")
        })?;
        BranchSource::New {
            branch: branch.to_string(),
            start,
        }
    };
    git::worktree_add(main, path, &source).map_err(|e| {
        Error::usage(format!("git could not create the worktree: {e}"))
            .hint("is the branch already checked out in another worktree? (`git worktree list`)")
    })
}

fn exists_error(path: &std::path::Path) -> Error {
    Error::failure(format!("`{}` already exists", path.display()))
        .hint("choose another name, or remove that directory if it is left over")
}
