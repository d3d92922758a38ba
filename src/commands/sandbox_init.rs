//! `kinfra sandbox init [--slot N] [--name NAME]`

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::registry::{self, Entry, canonical};
use crate::slug;
use crate::timefmt;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use this slot instead of the lowest free one.
    #[arg(long, allow_negative_numbers = true)]
    pub slot: Option<i64>,
    /// Instance id (a compose project name); default: the directory's name.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<u8> {
    let config = &ctx.config;
    let repo = ctx.require_repo()?;
    ctx.check_origin(repo)?;
    let root = canonical(&repo.toplevel);
    let id = match &args.name {
        Some(name) => {
            if !slug::is_valid_project_name(name) {
                return Err(Error::usage(format!(
                    "`{name}` is not a valid compose project name (a-z, 0-9, `-`, `_`, starting with a letter or digit, at most {} characters)",
                    slug::MAX_PROJECT_NAME
                ))
                .hint(format!("try `--name {}`", suggestion(name))));
            }
            name.clone()
        }
        None => {
            let base = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !slug::is_valid_project_name(&base) {
                return Err(Error::usage(format!(
                    "the directory name `{base}` is not a valid compose project name"
                ))
                .hint(format!("choose an id with `--name {}`", suggestion(&base))));
            }
            base
        }
    };
    let wanted_slot = args
        .slot
        .map(|s| super::sandbox_slot(s, config))
        .transpose()?;
    let env_path = root.join(&config.env_file);
    let resume = super::is_interrupted_init(ctx, &root, &id)?;
    if env_path.exists() && !resume {
        return Err(Error::failure(format!(
            "`{}` is already initialized (`{}` exists)",
            root.display(),
            config.env_file
        ))
        .hint("see `kinfra sandbox list`; `kinfra doctor` explains a stray env file"));
    }
    if resume {
        crate::output::note("resuming an interrupted init");
    } else {
        super::check_no_leftovers(&id)?;
    }

    let mut wrote = false;
    let slot = registry::update(
        &config.registry_path,
        &config.registry_lock_path(),
        |reg| -> Result<u32> {
            if let Some(e) = reg.at_path(&root) {
                return Err(Error::failure(format!(
                    "`{}` is already registered as `{}`",
                    root.display(),
                    e.instance_id
                )));
            }
            if reg.sandbox(&id).is_some()
                || reg
                    .local_prod
                    .as_ref()
                    .is_some_and(|lp| lp.instance_id == id)
            {
                return Err(Error::failure(format!("instance id `{id}` is taken"))
                    .hint("choose another with `--name NAME`"));
            }
            let slot = super::allocate_slot(reg, config, wanted_slot)?;
            super::check_ports_free(config, reg, slot)?;
            let created_at = timefmt::now_iso();
            super::write_env_file(config, &root, &id, slot, &created_at)?;
            wrote = true;
            crate::crashpoint::hit("init:after-env-file");
            reg.insert_sandbox(Entry {
                instance_id: id.clone(),
                slot,
                path: root.display().to_string(),
                created_at,
                is_worktree: repo.is_linked_worktree,
                parent_repo: repo
                    .is_linked_worktree
                    .then(|| repo.main_root.display().to_string()),
            });
            Ok(slot)
        },
    )
    .inspect_err(|_| {
        // Only an env file this command wrote goes again.
        if wrote {
            let _ = std::fs::remove_file(&env_path);
        }
    })?;
    super::print_summary(config, "initialized sandbox", &id, &root, slot);
    crate::output::data(&root.display().to_string());
    Ok(0)
}

fn suggestion(name: &str) -> String {
    let s = slug::slugify(name);
    if s.is_empty() { "my-sandbox".into() } else { s }
}
