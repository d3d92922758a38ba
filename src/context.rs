//! Where a command runs: the configuration in force, the checkout around the current
//! directory, and — for commands on "this instance" — the registered instance it is,
//! checked against the registry (SPEC section 6, invariants 2 and 3).

use std::path::{Path, PathBuf};

use crate::config::{CONFIG_FILE, Config};
use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::git::{self, RepoInfo};
use crate::registry::{Entry, Registry, canonical};

/// Settings every command starts from.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Config,
    pub cwd: PathBuf,
    /// The checkout around `cwd`, if any.
    pub repo: Option<RepoInfo>,
}

impl Ctx {
    /// Resolve the configuration: `--config`/`KINFRA_CONFIG`, else `kinfra.toml` at the
    /// top of this checkout, else at the main repository, else the built-in layout.
    pub fn load(config_flag: Option<&Path>) -> Result<Ctx> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::failure(format!("cannot read the current directory: {e}")))?;
        let repo = git::repo_info(&cwd)?;
        let path = match config_flag {
            Some(p) => Some(p.to_owned()),
            None => repo.as_ref().and_then(|r| {
                [r.toplevel.join(CONFIG_FILE), r.main_root.join(CONFIG_FILE)]
                    .into_iter()
                    .find(|p| p.is_file())
            }),
        };
        crate::output::verbose(&match &path {
            Some(p) => format!("config: {}", p.display()),
            None => "config: built-in ktrdr layout".to_string(),
        });
        let config = Config::load(path.as_deref())?;
        Ok(Ctx { config, cwd, repo })
    }

    pub fn registry(&self) -> Result<Registry> {
        Ok(Registry::load(&self.config.registry_path)?)
    }

    /// The checkout around cwd, or a usage error.
    pub fn require_repo(&self) -> Result<&RepoInfo> {
        self.repo.as_ref().ok_or_else(|| {
            Error::usage(format!(
                "`{}` is not inside a git repository",
                self.cwd.display()
            ))
            .hint("run this from a checkout of the project")
        })
    }

    /// The checkout must be the configured project (origin URL check).
    pub fn check_origin(&self, repo: &RepoInfo) -> Result<()> {
        let want = self.config.repo_check.to_lowercase();
        if want.is_empty() {
            return Ok(());
        }
        let origin = git::origin_url(&repo.toplevel)?;
        match origin {
            Some(url) if url.to_lowercase().contains(&want) => Ok(()),
            Some(url) => Err(Error::usage(format!(
                "`{}` is not a {} repository: origin `{url}` does not contain `{}`",
                repo.toplevel.display(),
                self.config.project_name,
                self.config.repo_check
            ))
            .hint("run this from a checkout of the project, or set `project.repo_check` in kinfra.toml")),
            None => Err(Error::usage(format!(
                "`{}` has no `origin` remote, so it cannot be checked as a {} repository",
                repo.toplevel.display(),
                self.config.project_name
            ))
            .hint("add the project's origin (`git remote add origin URL`), or set `project.repo_check = \"\"` in kinfra.toml")),
        }
    }
}

/// Walk up from `start` to the nearest directory holding `env_file`, never past `top`.
pub fn find_instance_root(start: &Path, top: &Path, env_file: &str) -> Option<PathBuf> {
    let top = canonical(top);
    let mut dir = canonical(start);
    loop {
        if dir.join(env_file).is_file() {
            return Some(dir);
        }
        if dir == top {
            return None;
        }
        dir = dir.parent()?.to_owned();
        if !dir.starts_with(&top) {
            return None;
        }
    }
}

/// An instance resolved from the current directory and confirmed by the registry.
#[derive(Debug, Clone)]
pub struct Instance {
    pub entry: Entry,
    pub root: PathBuf,
    pub env: EnvFile,
    pub is_local_prod: bool,
}

/// Which kind of instance a command accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Sandbox,
    LocalProd,
    Either,
}

/// Resolve "this instance" from cwd and check it against the registry.
pub fn current_instance(ctx: &Ctx, registry: &Registry, want: Want) -> Result<Instance> {
    let env_name = &ctx.config.env_file;
    let not_here = || {
        let hint = match want {
            Want::LocalProd => match &registry.local_prod {
                Some(lp) => format!("local-prod is registered at `{}`; cd there", lp.path),
                None => "create it with `kinfra local-prod create`".to_string(),
            },
            _ => "cd into a sandbox (see `kinfra sandbox list`), or create one with `kinfra sandbox create NAME`".to_string(),
        };
        Error::failure(format!(
            "not inside a kinfra instance: no `{env_name}` between `{}` and the repository top",
            ctx.cwd.display()
        ))
        .hint(hint)
    };
    let repo = ctx.repo.as_ref().ok_or_else(not_here)?;
    let Some(root) = find_instance_root(&ctx.cwd, &repo.toplevel, env_name) else {
        // A registered instance that lost its env file says so, rather than "not here".
        if let Some(e) = registry.at_path(&repo.toplevel) {
            return Err(Error::failure(format!(
                "`{}` is registered as `{}` but its `{env_name}` is missing",
                e.path, e.instance_id
            ))
            .hint("`kinfra doctor --fix` writes it again from the registry"));
        }
        return Err(not_here());
    };
    let env = EnvFile::load(&root.join(env_name))?;
    let id = env.require("INSTANCE_ID")?.to_string();
    let slot = env.require_number("SLOT_NUMBER", 0..=ctx.config.slot_count)?;
    // Every port a command might hand to compose or print must be well-formed.
    if let Ok(ports) = ctx.config.ports.for_slot(slot) {
        for p in ports {
            env.require_port(&p.key)?;
        }
    }

    let is_local_prod = registry
        .local_prod
        .as_ref()
        .is_some_and(|lp| canonical(lp.path()) == root);
    if is_local_prod && want == Want::Sandbox {
        return Err(
            Error::failure(format!("`{}` is local-prod, not a sandbox", root.display()))
                .hint("use `kinfra local-prod …` here"),
        );
    }
    if want == Want::LocalProd && !is_local_prod {
        let what = match registry.at_path(&root) {
            Some(e) => format!("sandbox `{}`", e.instance_id),
            None => "an unregistered directory".to_string(),
        };
        let hint = match &registry.local_prod {
            Some(lp) => format!(
                "local-prod commands run only in the registered local-prod at `{}`",
                lp.path
            ),
            None => "no local-prod is registered; create one with `kinfra local-prod create`"
                .to_string(),
        };
        return Err(
            Error::failure(format!("`{}` is {what}, not local-prod", root.display())).hint(hint),
        );
    }
    let entry = if is_local_prod {
        registry.local_prod.clone()
    } else {
        registry
            .instances
            .iter()
            .find(|e| canonical(e.path()) == root)
            .cloned()
    };
    let Some(entry) = entry else {
        return Err(Error::failure(format!(
            "`{}` has `{env_name}` but is not a registered instance",
            root.display()
        ))
        .hint("run `kinfra doctor` to see what is registered, or `kinfra sandbox init` to register this checkout"));
    };
    if entry.instance_id != id {
        return Err(Error::failure(format!(
            "`{}` says `INSTANCE_ID={id}` but the registry has `{}` at this path",
            root.join(env_name).display(),
            entry.instance_id
        ))
        .hint("run `kinfra doctor` to see the disagreement"));
    }
    Ok(Instance {
        entry,
        root,
        env,
        is_local_prod,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_up_to_the_env_file_but_not_past_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("repo");
        let deep = top.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_instance_root(&deep, &top, ".env.sandbox"), None);
        // An env file above the top does not count.
        std::fs::write(dir.path().join(".env.sandbox"), "").unwrap();
        assert_eq!(find_instance_root(&deep, &top, ".env.sandbox"), None);
        std::fs::write(top.join(".env.sandbox"), "").unwrap();
        assert_eq!(
            find_instance_root(&deep, &top, ".env.sandbox"),
            Some(canonical(&top))
        );
        std::fs::write(top.join("a/.env.sandbox"), "").unwrap();
        assert_eq!(
            find_instance_root(&deep, &top, ".env.sandbox"),
            Some(canonical(&top.join("a")))
        );
    }
}
