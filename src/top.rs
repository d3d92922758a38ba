//! `kinfra top`: a terminal dashboard of every registered instance — slot, state, each
//! gate check, main URL, CPU, memory and uptime — that starts and stops instances and
//! shows their logs. The rows come from the same listing as `sandbox list` and are read
//! again on every engine event; resource figures and gate checks are sampled on a
//! background thread (one `stats` call per running container, in parallel) so the
//! screen stays responsive. `u`/`d`/`l` run `kinfra` itself as a child process whose
//! output fills the log pane.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use crate::config::Config;
use crate::engine::Filters;
use crate::instance::Kind;
use crate::listing::{self, ListRow};
use crate::status::{self, Container};

/// The smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
/// How often resource figures and gate checks are sampled.
const STATS_EVERY: Duration = Duration::from_secs(5);
/// How often the rows are read again without an event (registry changes).
const ROWS_EVERY: Duration = Duration::from_secs(2);
/// Lines kept in the log pane.
const LOG_LINES: usize = 200;

/// Why `top` cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("`kinfra top` needs a terminal")]
    NotATerminal,
    #[error("cannot drive the terminal: {0}")]
    Terminal(std::io::Error),
}

impl crate::error::Diagnostic for TopError {
    fn exit(&self) -> crate::error::Exit {
        match self {
            TopError::NotATerminal => crate::error::Exit::Usage,
            TopError::Terminal(_) => crate::error::Exit::Failure,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            TopError::NotATerminal => Some(
                "for scripts, use `kinfra sandbox list --watch --json` or `kinfra sandbox status --json`"
                    .into(),
            ),
            TopError::Terminal(_) => None,
        }
    }
}

/// What the sampler measured for one running instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Percent of one CPU, summed over its containers.
    pub cpu_percent: f64,
    /// Bytes, summed over its containers.
    pub memory: u64,
    /// How long its longest-running container has been up, short (`3m`, `2h`).
    pub uptime: Option<String>,
    /// Each gate check in the layout's order: passed or not.
    pub checks: Vec<(String, bool)>,
}

/// Messages from the helper threads to the screen.
enum Msg {
    /// An engine event named this project.
    Changed,
    Samples(BTreeMap<String, Sample>),
    Log(String),
}

/// What the screen shows.
pub struct Model {
    pub rows: Vec<ListRow>,
    pub samples: BTreeMap<String, Sample>,
    pub urls: BTreeMap<String, String>,
    /// Gate check names of the layout, for the GATE column's legend.
    pub check_names: Vec<String>,
    pub log_title: String,
    pub log: Vec<String>,
    pub selected: usize,
    pub color: bool,
}

impl Model {
    fn selected_row(&self) -> Option<&ListRow> {
        self.rows.get(self.selected)
    }

    fn push_log(&mut self, line: String) {
        self.log.push(line);
        if self.log.len() > LOG_LINES {
            let cut = self.log.len() - LOG_LINES;
            self.log.drain(..cut);
        }
    }

    fn set_rows(&mut self, rows: Vec<ListRow>) {
        // Keep the selection on the same instance when rows come and go.
        let id = self.selected_row().map(|r| r.instance_id.clone());
        self.rows = rows;
        self.selected = id
            .and_then(|id| self.rows.iter().position(|r| r.instance_id == id))
            .unwrap_or(self.selected)
            .min(self.rows.len().saturating_sub(1));
    }
}

/// `Up 3 minutes (healthy)` → `3m`; `Up About an hour` → `1h`.
pub fn short_uptime(docker_status: &str) -> Option<String> {
    let rest = docker_status.strip_prefix("Up ")?;
    let rest = rest.split(" (").next().unwrap_or(rest).trim();
    let lower = rest.to_ascii_lowercase();
    let fixed = match lower.as_str() {
        "less than a second" => Some("0s"),
        "about a minute" => Some("1m"),
        "about an hour" => Some("1h"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let (n, unit) = lower.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let unit = match unit.trim_end_matches('s') {
        "second" => "s",
        "minute" => "m",
        "hour" => "h",
        "day" => "d",
        "week" => "w",
        "month" => "mo",
        "year" => "y",
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

/// `1536000` → `1.5M`.
pub fn short_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// Control characters (colour codes of child output) taken out of a log line.
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c == '\t' {
            out.push_str("    ");
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Draw the whole screen.
pub fn draw(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        frame.render_widget(
            Paragraph::new(format!(
                "terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT})"
            )),
            area,
        );
        return;
    }
    let [head, table, detail, log, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(2),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(area);
    let running = model.rows.iter().filter(|r| r.status == "running").count();
    frame.render_widget(
        Paragraph::new(format!(
            "kinfra top — {} instance(s), {running} running",
            model.rows.len()
        )),
        head,
    );
    draw_table(frame, model, table);
    draw_detail(frame, model, detail);
    let log_height = log.height.saturating_sub(2) as usize;
    let start = model.log.len().saturating_sub(log_height);
    let lines: Vec<Line> = model.log[start..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {} ", model.log_title)),
        ),
        log,
    );
    frame.render_widget(
        Paragraph::new("↑/↓ j/k move  u up  d down  l logs  q quit"),
        foot,
    );
}

fn gate_cell(model: &Model, row: &ListRow) -> String {
    match model.samples.get(&row.instance_id) {
        Some(s) if row.status != "stopped" && !s.checks.is_empty() => s
            .checks
            .iter()
            .map(|(_, ok)| if *ok { '✓' } else { '✗' })
            .collect(),
        _ => "-".into(),
    }
}

fn draw_table(frame: &mut Frame, model: &Model, area: Rect) {
    let gate_width = (model.check_names.len() as u16).max(4);
    let header = Row::new([
        "SLOT", "INSTANCE", "STATE", "GATE", "URL", "CPU", "MEM", "UP",
    ]);
    let rows: Vec<Row> = model
        .rows
        .iter()
        .map(|r| {
            let sample = model
                .samples
                .get(&r.instance_id)
                .filter(|_| r.status == "running" || r.status.starts_with("partial"));
            // A running instance with healthchecks shows its worst health instead.
            let state = match (r.stale, r.health) {
                (true, _) => "missing".to_string(),
                (false, Some(h)) if r.status == "running" => h.label().to_string(),
                _ => r.status.clone(),
            };
            let style = if model.color {
                match state.as_str() {
                    "unhealthy" | "missing" => Style::default().fg(Color::Red),
                    "running" | "healthy" => Style::default().fg(Color::Green),
                    s if s.starts_with("partial") || s == "queued" => {
                        Style::default().fg(Color::Yellow)
                    }
                    _ => Style::default(),
                }
            } else {
                Style::default()
            };
            Row::new([
                Cell::from(r.slot.to_string()),
                Cell::from(r.instance_id.clone()),
                Cell::from(state).style(style),
                Cell::from(gate_cell(model, r)),
                Cell::from(
                    model
                        .urls
                        .get(&r.instance_id)
                        .map(|u| u.trim_start_matches("http://").to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(sample.map_or("-".into(), |s| format!("{:.1}%", s.cpu_percent))),
                Cell::from(sample.map_or("-".into(), |s| short_bytes(s.memory))),
                Cell::from(
                    sample
                        .and_then(|s| s.uptime.clone())
                        .unwrap_or_else(|| "-".into()),
                ),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(4),
        Constraint::Min(12),
        Constraint::Length(13),
        Constraint::Length(gate_width),
        Constraint::Length(20),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(4),
    ];
    let highlight = if model.color {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        Style::default()
    };
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(highlight)
        .highlight_symbol("> ")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state = TableState::default();
    if !model.rows.is_empty() {
        state.select(Some(model.selected));
    }
    frame.render_stateful_widget(table, area, &mut state);
    if model.rows.is_empty() {
        let [_, below] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
        frame.render_widget(
            Paragraph::new("  no instances are registered; `kinfra sandbox create NAME` makes one"),
            below,
        );
    }
}

fn draw_detail(frame: &mut Frame, model: &Model, area: Rect) {
    let Some(row) = model.selected_row() else {
        return;
    };
    let gate = match model.samples.get(&row.instance_id) {
        Some(s) if !s.checks.is_empty() && row.status != "stopped" => s
            .checks
            .iter()
            .map(|(name, ok)| format!("{name} {}", if *ok { '✓' } else { '✗' }))
            .collect::<Vec<_>>()
            .join("  "),
        _ => format!("{} (not running)", model.check_names.join(" ")),
    };
    let lines = vec![
        Line::from(format!(
            "{} ({}) {}",
            row.instance_id,
            row.kind.label(),
            row.branch.as_deref().unwrap_or("-")
        )),
        Line::from(format!("gate: {gate}")),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

/// Everything the sampler needs to know about one instance.
#[derive(Clone)]
struct Target {
    id: String,
    slot: u32,
}

/// One sample of every running instance: containers once, then a `stats` call per
/// running container (all at once) and each gate check tried once.
fn sample_all(config: &Config, targets: &[Target]) -> BTreeMap<String, Sample> {
    let mut out = BTreeMap::new();
    let Ok(all) = status::all_containers() else {
        return out;
    };
    let by_project = status::by_project(all);
    let engine = crate::docker::read_engine().ok();
    std::thread::scope(|scope| {
        let mut jobs = Vec::new();
        for t in targets {
            let Some(containers) = by_project.get(&t.id) else {
                continue;
            };
            if !containers.iter().any(Container::is_running) {
                continue;
            }
            let engine = engine.as_ref();
            jobs.push(
                scope.spawn(move || (t.id.clone(), sample_one(config, engine, t, containers))),
            );
        }
        for job in jobs {
            if let Ok((id, sample)) = job.join() {
                out.insert(id, sample);
            }
        }
    });
    out
}

fn sample_one(
    config: &Config,
    engine: Option<&crate::engine::Engine>,
    target: &Target,
    containers: &[Container],
) -> Sample {
    let running: Vec<&Container> = containers.iter().filter(|c| c.is_running()).collect();
    let stats: Vec<crate::engine::Stats> = std::thread::scope(|scope| {
        let jobs: Vec<_> = running
            .iter()
            .filter_map(|c| {
                let engine = engine?;
                Some(scope.spawn(move || engine.stats_once(&c.name).ok()))
            })
            .collect();
        jobs.into_iter()
            .filter_map(|j| j.join().ok().flatten())
            .collect()
    });
    let ports = config.ports.for_slot(target.slot).unwrap_or_default();
    let checks = config
        .gate_checks
        .iter()
        .map(|spec| {
            let passed = ports.iter().find(|p| p.key == spec.port).is_some_and(|p| {
                crate::gate::Check::from_spec(spec, p.port)
                    .attempt(containers)
                    .is_ok()
            });
            (spec.name.clone(), passed)
        })
        .collect();
    // The longest-running container's uptime: Docker's status of each, shortest text
    // is not the longest time, so compare in seconds.
    let uptime = running
        .iter()
        .filter_map(|c| short_uptime(&c.status))
        .max_by_key(|u| uptime_secs(u));
    Sample {
        cpu_percent: stats.iter().map(|s| s.cpu_percent).sum(),
        memory: stats.iter().map(|s| s.memory_usage).sum(),
        uptime,
        checks,
    }
}

fn uptime_secs(short: &str) -> u64 {
    let digits: String = short.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().unwrap_or(0);
    let unit = &short[digits.len()..];
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        "mo" => 2_592_000,
        "y" => 31_536_000,
        _ => 0,
    }
}

/// Restores the terminal when `top` ends, however it ends (ratatui's own panic hook
/// restores it on a panic).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// The arguments of the `kinfra` child for `u`, `d` and `l` on `row`.
fn child_args(action: char, row: &ListRow) -> Vec<String> {
    let verb = match action {
        'u' => "up",
        'd' => "down",
        _ => "logs",
    };
    let mut args: Vec<String> = match row.kind {
        Kind::Sandbox => vec![
            "sandbox".into(),
            verb.into(),
            "--instance".into(),
            row.instance_id.clone(),
        ],
        Kind::LocalProd => vec!["local-prod".into(), verb.into()],
    };
    if verb == "logs" {
        args.extend(["--tail".into(), "40".into()]);
    }
    args
}

/// Run `kinfra ARGS` with its output (both streams) sent line by line to the log pane.
fn spawn_child(exe: &PathBuf, cwd: &PathBuf, args: &[String], tx: &Sender<Msg>) {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    match cmd.spawn() {
        Err(e) => {
            let _ = tx.send(Msg::Log(format!("cannot run kinfra: {e}")));
        }
        Ok(mut child) => {
            let pipe = |r: Option<Box<dyn Read + Send>>, tx: Sender<Msg>| {
                if let Some(r) = r {
                    std::thread::spawn(move || {
                        for line in BufReader::new(r).lines().map_while(std::result::Result::ok) {
                            if tx.send(Msg::Log(printable(&line))).is_err() {
                                break;
                            }
                        }
                    });
                }
            };
            pipe(
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                tx.clone(),
            );
            pipe(
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                tx.clone(),
            );
            let tx = tx.clone();
            let what = args.join(" ");
            std::thread::spawn(move || {
                let line = match child.wait() {
                    Ok(s) => format!("`kinfra {what}` exited with {}", s.code().unwrap_or(-1)),
                    Err(e) => format!("`kinfra {what}`: {e}"),
                };
                let _ = tx.send(Msg::Log(line));
                let _ = tx.send(Msg::Changed);
            });
        }
    }
}

/// Run the dashboard until `q`, Esc, Ctrl-C or SIGTERM.
pub fn run(config: &Config, cwd: &std::path::Path) -> crate::error::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TopError::NotATerminal.into());
    }
    let paths = config.registry_paths();
    let load_rows = || -> Vec<ListRow> {
        match crate::registry::load_with_state(&paths) {
            Ok((registry, state)) => listing::list(config, &registry, &state, cwd).instances,
            Err(_) => Vec::new(),
        }
    };
    let api_key = config.ports.specs.first().map(|(k, _)| k.clone());
    let urls_of = |rows: &[ListRow]| -> BTreeMap<String, String> {
        rows.iter()
            .filter_map(|r| {
                let key = api_key.as_deref()?;
                let port = r.api_port?;
                Some((
                    r.instance_id.clone(),
                    crate::commands::url_of(config, key, port),
                ))
            })
            .collect()
    };
    let rows = load_rows();
    let mut model = Model {
        urls: urls_of(&rows),
        rows,
        samples: BTreeMap::new(),
        check_names: config.gate_checks.iter().map(|c| c.name.clone()).collect(),
        log_title: "log".into(),
        log: Vec::new(),
        selected: 0,
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let exe = std::env::current_exe().map_err(TopError::Terminal)?;
    let cwd_buf = cwd.to_path_buf();

    let (tx, rx): (Sender<Msg>, Receiver<Msg>) = mpsc::channel();
    let quit = Arc::new(AtomicBool::new(false));
    let targets = Arc::new(std::sync::Mutex::new(targets_of(&model.rows)));
    // Engine events: any container of a compose project changed.
    let events = {
        let (tx, quit) = (tx.clone(), Arc::clone(&quit));
        std::thread::spawn(move || {
            let filters = Filters::new()
                .of_type("container")
                .label(crate::docker::PROJECT_LABEL);
            let Some(mut stream) = crate::docker::read_engine()
                .ok()
                .and_then(|e| e.events(&filters, None).ok())
            else {
                return;
            };
            while !quit.load(Ordering::SeqCst) {
                match stream.next_timeout(Duration::from_millis(300)) {
                    Ok(Some(_)) => {
                        if tx.send(Msg::Changed).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
            }
        })
    };
    // The sampler: every few seconds, and at once after a change.
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let sampler = {
        let (tx, quit, targets) = (tx.clone(), Arc::clone(&quit), Arc::clone(&targets));
        let config = config.clone();
        std::thread::spawn(move || {
            while !quit.load(Ordering::SeqCst) {
                let list = targets.lock().map(|t| t.clone()).unwrap_or_default();
                let samples = sample_all(&config, &list);
                if quit.load(Ordering::SeqCst) || tx.send(Msg::Samples(samples)).is_err() {
                    return;
                }
                match wake_rx.recv_timeout(STATS_EVERY) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
        })
    };

    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let restore = Restore;
    let mut last_rows = Instant::now();
    let mut dirty = true;
    let result = loop {
        if dirty {
            if let Err(e) = terminal.draw(|f| draw(f, &model)) {
                break Err(TopError::Terminal(e));
            }
            dirty = false;
        }
        if crate::interrupt::requested() {
            break Ok(());
        }
        match event::poll(Duration::from_millis(150)) {
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    dirty = true;
                    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL)
                        && key.code == KeyCode::Char('c');
                    match key.code {
                        _ if ctrl_c => break Ok(()),
                        KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
                        KeyCode::Down | KeyCode::Char('j') => {
                            model.selected =
                                (model.selected + 1).min(model.rows.len().saturating_sub(1));
                        }
                        KeyCode::Up | KeyCode::Char('k') => {
                            model.selected = model.selected.saturating_sub(1);
                        }
                        KeyCode::Char(c @ ('u' | 'd' | 'l')) => {
                            if let Some(row) = model.selected_row().cloned() {
                                let args = child_args(c, &row);
                                model.log_title = format!("kinfra {}", args.join(" "));
                                model.log.clear();
                                spawn_child(&exe, &cwd_buf, &args, &tx);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(Event::Resize(..)) => dirty = true,
                Ok(_) => {}
                Err(e) => break Err(TopError::Terminal(e)),
            },
            Ok(false) => {}
            Err(e) => break Err(TopError::Terminal(e)),
        }
        let mut reload = last_rows.elapsed() >= ROWS_EVERY;
        while let Ok(msg) = rx.try_recv() {
            dirty = true;
            match msg {
                Msg::Changed => reload = true,
                Msg::Samples(s) => model.samples = s,
                Msg::Log(line) => model.push_log(line),
            }
        }
        if reload {
            let rows = load_rows();
            if rows != model.rows {
                dirty = true;
                let grew = targets_of(&rows);
                model.urls = urls_of(&rows);
                model.set_rows(rows);
                if let Ok(mut t) = targets.lock() {
                    *t = grew;
                }
                let _ = wake_tx.send(());
            }
            last_rows = Instant::now();
        }
    };
    quit.store(true, Ordering::SeqCst);
    drop(restore);
    drop(wake_tx);
    // Both threads notice `quit` within a read timeout; nothing waits on a slow stats
    // call after the screen is gone.
    drop(events);
    drop(sampler);
    result.map_err(Into::into)
}

fn targets_of(rows: &[ListRow]) -> Vec<Target> {
    rows.iter()
        .map(|r| Target {
            id: r.instance_id.clone(),
            slot: r.slot,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn row(id: &str, slot: u32, status: &str) -> ListRow {
        ListRow {
            instance_id: id.into(),
            kind: Kind::Sandbox,
            slot,
            path: format!("/x/{id}"),
            created_at: "2026-01-01T00:00:00Z".into(),
            is_worktree: true,
            parent_repo: None,
            branch: Some("main".into()),
            api_port: Some(8000 + slot as u16),
            status: status.into(),
            health: None,
            stale: false,
            current: false,
        }
    }

    fn model() -> Model {
        Model {
            rows: vec![row("a", 1, "running"), row("b", 2, "stopped")],
            samples: BTreeMap::from([(
                "a".to_string(),
                Sample {
                    cpu_percent: 1.5,
                    memory: 3 << 20,
                    uptime: Some("3m".into()),
                    checks: vec![("api".into(), true), ("db".into(), false)],
                },
            )]),
            urls: BTreeMap::from([("a".to_string(), "http://localhost:8001".to_string())]),
            check_names: vec!["api".into(), "db".into()],
            log_title: "log".into(),
            log: vec!["hello".into()],
            selected: 0,
            color: false,
        }
    }

    fn screen(w: u16, h: u16, model: &Model) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, model)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn rows_show_state_gate_url_and_figures() {
        let s = screen(80, 24, &model());
        assert!(s.contains("> 1"), "{s}");
        assert!(s.contains("✓✗"), "{s}");
        assert!(s.contains("localhost:8001"), "{s}");
        assert!(
            s.contains("1.5%") && s.contains("3.0M") && s.contains("3m"),
            "{s}"
        );
        assert!(s.contains("gate: api ✓  db ✗"), "{s}");
        assert!(s.contains("hello"), "{s}");
    }

    #[test]
    fn a_small_terminal_gets_one_line() {
        let s = screen(60, 10, &model());
        assert_eq!(
            s.lines().next().unwrap().trim(),
            "terminal too small (need 80x24)"
        );
    }

    #[test]
    fn uptime_and_bytes_are_short() {
        assert_eq!(
            short_uptime("Up 3 minutes (healthy)").as_deref(),
            Some("3m")
        );
        assert_eq!(short_uptime("Up About an hour").as_deref(), Some("1h"));
        assert_eq!(short_uptime("Up 2 days").as_deref(), Some("2d"));
        assert_eq!(short_uptime("Exited (0) 3 minutes ago"), None);
        assert_eq!(uptime_secs("2h"), 7200);
        assert_eq!(short_bytes(512), "512B");
        assert_eq!(short_bytes(1536 * 1024), "1.5M");
        assert_eq!(printable("\x1b[32mok\x1b[0m\tx"), "ok    x");
    }

    #[test]
    fn the_selection_follows_its_instance() {
        let mut m = model();
        m.selected = 1;
        m.set_rows(vec![
            row("0", 0, "stopped"),
            row("a", 1, "running"),
            row("b", 2, "x"),
        ]);
        assert_eq!(m.selected_row().unwrap().instance_id, "b");
        m.set_rows(vec![row("a", 1, "running")]);
        assert_eq!(m.selected, 0);
    }
}
