//! `kinfra man --dir DIR`: a man page per command, generated from the CLI definition.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::Result;
use crate::fsutil::fs_err;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  kinfra man --dir ~/.local/share/man/man1 && man kinfra-sandbox-create")]
pub struct Args {
    /// Directory to write the pages into (`kinfra.1`, `kinfra-sandbox-create.1`, …).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: &Args) -> Result<u8> {
    std::fs::create_dir_all(&args.dir).map_err(fs_err("create", &args.dir))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = 0;
    write_pages(&cmd, "kinfra", &args.dir, &mut written)?;
    output::done(&format!(
        "wrote {written} man page(s) to `{}`",
        args.dir.display()
    ));
    Ok(0)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path, written: &mut usize) -> Result<()> {
    let page = cmd.clone().name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .map_err(fs_err("render", &path))?;
    std::fs::write(&path, buf).map_err(fs_err("write", &path))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
