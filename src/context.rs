//! Where a command runs: the configuration in force and the checkout around the
//! current directory.

use std::path::{Path, PathBuf};

use crate::config::{CONFIG_FILE, Config};
use crate::error::{Diagnostic, Exit, Result};
use crate::git::{self, RepoInfo};
use crate::registry::Registry;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read the current directory: {0}")]
    Cwd(std::io::Error),
    #[error("`{}` is not inside a git repository", .0.display())]
    NotInRepo(PathBuf),
    #[error("`{}` is not a {project} repository: origin `{url}` does not contain `{check}`", .root.display())]
    WrongOrigin {
        root: PathBuf,
        project: String,
        url: String,
        check: String,
    },
    #[error("`{}` has no `origin` remote, so it cannot be checked as a {project} repository", .root.display())]
    NoOrigin { root: PathBuf, project: String },
}

impl Diagnostic for ContextError {
    fn exit(&self) -> Exit {
        match self {
            ContextError::Cwd(_) => Exit::Failure,
            _ => Exit::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ContextError::Cwd(_) => None,
            ContextError::NotInRepo(_) => Some("run this from a checkout of the project".into()),
            ContextError::WrongOrigin { .. } => Some(
                "run this from a checkout of the project, or set `project.repo_check` in kinfra.toml".into(),
            ),
            ContextError::NoOrigin { .. } => Some(
                "add the project's origin (`git remote add origin URL`), or set `project.repo_check = \"\"` in kinfra.toml".into(),
            ),
        }
    }
}

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
        let cwd = std::env::current_dir().map_err(ContextError::Cwd)?;
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
    pub fn require_repo(&self) -> Result<&RepoInfo, ContextError> {
        self.repo
            .as_ref()
            .ok_or_else(|| ContextError::NotInRepo(self.cwd.clone()))
    }

    /// The checkout must be the configured project (origin URL check).
    pub fn check_origin(&self, repo: &RepoInfo) -> Result<()> {
        let want = self.config.repo_check.to_lowercase();
        if want.is_empty() {
            return Ok(());
        }
        match git::origin_url(&repo.toplevel)? {
            Some(url) if url.to_lowercase().contains(&want) => Ok(()),
            Some(url) => Err(ContextError::WrongOrigin {
                root: repo.toplevel.clone(),
                project: self.config.project_name.clone(),
                url,
                check: self.config.repo_check.clone(),
            }
            .into()),
            None => Err(ContextError::NoOrigin {
                root: repo.toplevel.clone(),
                project: self.config.project_name.clone(),
            }
            .into()),
        }
    }
}
