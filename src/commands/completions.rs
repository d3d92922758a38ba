//! `kinfra completions SHELL`: the line that loads kinfra's completions into a shell.
//! The completions are dynamic (`COMPLETE=SHELL kinfra`): they ask kinfra itself, so
//! instance names complete from the registry.

use crate::error::Result;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  echo 'eval \"$(kinfra completions bash)\"' >> ~/.bashrc
  echo 'eval \"$(kinfra completions zsh)\"' >> ~/.zshrc
  kinfra completions fish > ~/.config/fish/completions/kinfra.fish")]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args) -> Result<u8> {
    use clap_complete::Shell;
    let line = match args.shell {
        Shell::Bash => "source <(COMPLETE=bash kinfra)",
        Shell::Zsh => "source <(COMPLETE=zsh kinfra)",
        Shell::Fish => "COMPLETE=fish kinfra | source",
        Shell::Elvish => "eval (E:COMPLETE=elvish kinfra | slurp)",
        Shell::PowerShell => {
            "$env:COMPLETE = \"powershell\"; kinfra | Out-String | Invoke-Expression; Remove-Item Env:\\COMPLETE"
        }
        _ => "source <(COMPLETE=bash kinfra)",
    };
    output::data(line);
    Ok(0)
}

/// Instance ids and the names they were created with, for completing NAME arguments.
/// Quiet and best-effort: a completion never prints an error.
pub fn instance_names() -> Vec<clap_complete::CompletionCandidate> {
    let Ok(ctx) = crate::context::Ctx::load(None) else {
        return Vec::new();
    };
    let Ok((registry, state)) = crate::registry::load_with_state(&ctx.config.registry_paths())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in &registry.instances {
        out.push(clap_complete::CompletionCandidate::new(&e.instance_id));
        if let Some(name) = state.instance(&e.instance_id).and_then(|s| s.name.clone()) {
            out.push(
                clap_complete::CompletionCandidate::new(name)
                    .help(Some(e.instance_id.clone().into())),
            );
        }
    }
    out
}
