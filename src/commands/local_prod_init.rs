//! `kinfra local-prod init` — make the current clone local-prod.

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::registry::{self, Entry, canonical};
use crate::timefmt;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Ctx, _args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let repo = ctx.require_repo()?;
    if repo.is_linked_worktree {
        return Err(Error::failure(format!(
            "`{}` is a linked git worktree; local-prod must be an independent clone",
            repo.toplevel.display()
        ))
        .hint("use `kinfra local-prod create` to make one"));
    }
    ctx.check_origin(repo)?;
    let root = canonical(&repo.toplevel);
    let env_path = root.join(&config.env_file);
    let id = config.local_prod_id.clone();
    let resume = super::is_interrupted_init(ctx, &root, &id)?;
    if env_path.exists() && !resume {
        return Err(Error::failure(format!(
            "`{}` is already initialized (`{}` exists)",
            root.display(),
            config.env_file
        )));
    }
    if resume {
        crate::output::note("resuming an interrupted init");
    } else {
        super::check_no_leftovers(&id)?;
    }
    let mut wrote = false;
    registry::update(
        &config.registry_path,
        &config.registry_lock_path(),
        |reg| -> Result<()> {
            if let Some(lp) = &reg.local_prod {
                return Err(Error::failure(format!(
                    "local-prod is already registered: `{}` at `{}`",
                    lp.instance_id, lp.path
                ))
                .hint("there is only one local-prod; `kinfra local-prod destroy` it first"));
            }
            if let Some(e) = reg.at_path(&root) {
                return Err(Error::failure(format!(
                    "`{}` is registered as sandbox `{}`",
                    root.display(),
                    e.instance_id
                )));
            }
            super::check_ports_free(config, reg, 0)?;
            let created_at = timefmt::now_iso();
            super::write_env_file(config, &root, &id, 0, &created_at)?;
            wrote = true;
            reg.local_prod = Some(Entry {
                instance_id: id.clone(),
                slot: 0,
                path: root.display().to_string(),
                created_at,
                is_worktree: false,
                parent_repo: None,
            });
            Ok(())
        },
    )
    .inspect_err(|_| {
        if wrote {
            let _ = std::fs::remove_file(&env_path);
        }
    })?;
    super::print_summary(config, "initialized local-prod", &id, &root, 0);
    crate::output::data(&root.display().to_string());
    Ok(0)
}
