//! Where a command runs: the configuration in force and the checkout around the
//! current directory.

use std::path::{Path, PathBuf};

use crate::compose::model;
use crate::config::{self, Base, CONFIG_FILE, Config, Layer, Source, derive};
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
    #[error("the current directory `{}` holds a control character", .0.display())]
    ControlChar(PathBuf),
    #[error("no compose file in `{}` (looked for {})", .root.display(), .looked_for.join(", "))]
    NoComposeFile {
        root: PathBuf,
        looked_for: Vec<String>,
    },
}

impl Diagnostic for ContextError {
    fn exit(&self) -> Exit {
        match self {
            ContextError::Cwd(_) | ContextError::NoComposeFile { .. } => Exit::Failure,
            ContextError::ControlChar(_) => Exit::Refused,
            _ => Exit::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ContextError::Cwd(_) => None,
            ContextError::ControlChar(_) => {
                Some("rename the directory: kinfra does not act on such paths".into())
            }
            ContextError::NotInRepo(_) => Some("run this from a checkout of the project".into()),
            ContextError::WrongOrigin { .. } => Some(
                "run this from a checkout of the project; a compose project needs a compose file (compose.yaml, docker-compose.yml) or a kinfra.toml".into(),
            ),
            ContextError::NoComposeFile { .. } => Some(
                "add a compose file, or set `instance.compose_files` in kinfra.toml".into(),
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
    /// `--config` / `KINFRA_CONFIG`, when given (it applies to instances found by name
    /// too).
    pub config_flag: Option<PathBuf>,
}

impl Ctx {
    /// Resolve the configuration for the checkout around the current directory.
    pub fn load(config_flag: Option<&Path>) -> Result<Ctx> {
        let cwd = std::env::current_dir().map_err(ContextError::Cwd)?;
        if cwd.to_string_lossy().chars().any(char::is_control) {
            return Err(ContextError::ControlChar(cwd).into());
        }
        Self::at(&cwd, config_flag)
    }

    /// The context of a command run in `dir` (an instance found by name elsewhere).
    pub fn at(dir: &Path, config_flag: Option<&Path>) -> Result<Ctx> {
        let repo = git::repo_info(dir)?;
        let config = resolve_config(config_flag, repo.as_ref())?;
        Ok(Ctx {
            config,
            cwd: dir.to_owned(),
            repo,
            config_flag: config_flag.map(Path::to_owned),
        })
    }

    /// The main repositories of this project: the current checkout's, every registered
    /// instance's, and the clones the per-user index knows (existing ones, each once).
    pub fn main_repos(&self, registry: Option<&Registry>) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.repo.iter().map(|r| r.main_root.clone()).collect();
        if let Some(reg) = registry {
            out.extend(
                reg.all()
                    .filter_map(|e| e.parent_repo.as_deref().map(PathBuf::from)),
            );
        }
        if let Ok(index) = crate::index::load()
            && let Some(p) = index.project(&self.config.project_name)
        {
            out.extend(p.main_repos.iter().cloned());
        }
        let mut seen = Vec::new();
        out.retain(|m| {
            let c = crate::registry::canonical(m);
            let new = m.is_dir() && !seen.contains(&c);
            seen.push(c);
            new
        });
        out
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

/// The configuration in force for `repo`: `--config`/`KINFRA_CONFIG`, else
/// `kinfra.toml` at the top of the checkout, else at the main repository — merged over
/// the built-in ktrdr layout in a ktrdr checkout (origin names ktrdr), over a layout
/// derived from the compose file in any other compose project, else over the built-in
/// layout (whose repository check then says what is wrong).
pub fn resolve_config(flag: Option<&Path>, repo: Option<&RepoInfo>) -> Result<Config> {
    let file = match flag {
        Some(p) => Some(p.to_owned()),
        None => repo.and_then(|r| {
            [r.toplevel.join(CONFIG_FILE), r.main_root.join(CONFIG_FILE)]
                .into_iter()
                .find(|p| p.is_file())
        }),
    };
    let over: Option<(PathBuf, Layer)> = match file {
        Some(p) => {
            let text = config::read_config_file(&p)?;
            let layer = config::parse_layer(&p, &text)?;
            Some((p, layer))
        }
        None => None,
    };
    let with = |base: Layer, source: Source| -> Result<Config> {
        Ok(Config::resolve_over(
            base,
            source,
            over.as_ref().map(|(p, l)| (p.as_path(), l.clone())),
        )?)
    };
    let Some(repo) = repo else {
        return with(Layer::ktrdr(), Source::Builtin);
    };
    let compose_names: Vec<String> = over
        .as_ref()
        .and_then(|(_, l)| l.instance.as_ref()?.compose_files.clone())
        .unwrap_or_else(|| {
            derive::COMPOSE_FILES
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
    let compose_file = compose_names
        .iter()
        .find(|n| repo.toplevel.join(n).is_file())
        .cloned();
    let base = match over.as_ref().and_then(|(_, l)| l.base) {
        Some(b) => b,
        None if is_ktrdr_checkout(repo) => Base::Ktrdr,
        None if compose_file.is_some() => Base::Compose,
        None => Base::Ktrdr,
    };
    match (base, compose_file) {
        (Base::Ktrdr, _) => with(Layer::ktrdr(), Source::Builtin),
        (Base::Compose, None) => Err(ContextError::NoComposeFile {
            root: repo.toplevel.clone(),
            looked_for: compose_names,
        }
        .into()),
        (Base::Compose, Some(name)) => {
            let path = repo.toplevel.join(&name);
            // Only the defaults matter for counting published variables.
            let model = model::load(std::slice::from_ref(&path), &|_| None).ok();
            let index = crate::index::load()?;
            let project = over
                .as_ref()
                .and_then(|(_, l)| l.project.as_ref()?.name.clone())
                .or_else(|| known_project(&index, repo))
                .unwrap_or_else(|| derive::project_name(&repo.main_root));
            let state_dir = crate::index::project_state_dir(&project)?;
            let layer = derive::layout(
                &project,
                &name,
                model.as_ref(),
                &state_dir,
                index.ports_base_for(&project),
            );
            with(layer, Source::Derived { compose_file: path })
        }
    }
}

/// A ktrdr checkout: its origin URL names ktrdr (what ktrdr's own tool checks).
fn is_ktrdr_checkout(repo: &RepoInfo) -> bool {
    git::origin_url(&repo.toplevel)
        .ok()
        .flatten()
        .is_some_and(|u| u.to_lowercase().contains("ktrdr"))
}

/// The project the index knows this checkout by: one whose main repository it is, or
/// whose registry has an instance here (a local-prod clone is its own main repository).
fn known_project(index: &crate::index::Index, repo: &RepoInfo) -> Option<String> {
    let main = crate::registry::canonical(&repo.main_root);
    let top = crate::registry::canonical(&repo.toplevel);
    index
        .projects
        .iter()
        .find(|p| {
            p.main_repos
                .iter()
                .any(|m| crate::registry::canonical(m) == main)
        })
        .or_else(|| {
            index
                .projects
                .iter()
                .find(|p| Registry::load(&p.registry).is_ok_and(|r| r.at_path(&top).is_some()))
        })
        .map(|p| p.name.clone())
}
