//! What the Engine API answers, as typed values holding only the fields kinfra uses
//! (unknown fields are ignored, `null` lists and maps read as empty), and the small
//! pure computations on them: health and exit code from a status text, CPU percentage
//! the way `docker stats` computes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub use crate::docker::PROJECT_LABEL;
/// Label compose puts on a service's containers.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Labels, in the engine's order.
pub type Labels = BTreeMap<String, String>;

/// Read `null` (which the engine sends for empty lists and maps) as the default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A container's health, as its status text or inspect data reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// From the engine's health word (`healthy`, `unhealthy`, `starting`).
    pub fn parse(word: &str) -> Option<Health> {
        match word.trim() {
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            "starting" => Some(Health::Starting),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// A published or exposed port of a listed container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Port {
    /// Host address the port is published on; absent when only exposed.
    #[serde(rename = "IP", default)]
    pub ip: Option<String>,
    #[serde(rename = "PrivatePort")]
    pub private_port: u16,
    #[serde(rename = "PublicPort", default)]
    pub public_port: Option<u16>,
    /// `tcp`, `udp` or `sctp`.
    #[serde(rename = "Type")]
    pub kind: String,
}

/// One row of `GET /containers/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: String,
    /// With the engine's leading `/`; see [`ContainerSummary::name`].
    #[serde(default, deserialize_with = "null_default")]
    pub names: Vec<String>,
    pub image: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
    /// `created`, `running`, `exited`, `paused`, `restarting`, `removing`, `dead`.
    pub state: String,
    /// Human text: "Up 3 minutes (healthy)", "Exited (1) 2 hours ago".
    pub status: String,
    /// Unix seconds.
    pub created: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<Port>,
}

impl ContainerSummary {
    /// The container's name without the leading `/`.
    pub fn name(&self) -> &str {
        self.names
            .first()
            .map(|n| n.trim_start_matches('/'))
            .unwrap_or_default()
    }

    /// The compose project it belongs to.
    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }

    /// The compose service it runs.
    pub fn service(&self) -> Option<&str> {
        self.labels.get(SERVICE_LABEL).map(String::as_str)
    }

    /// Its health, if it has a health check.
    pub fn health(&self) -> Option<Health> {
        health_from_status(&self.status)
    }

    /// Its exit code, if it has exited.
    pub fn exit_code(&self) -> Option<i64> {
        exit_code_from_status(&self.status)
    }
}

/// Health from a status text: "Up 5 seconds (health: starting)", "Up 2 hours (healthy)".
pub fn health_from_status(status: &str) -> Option<Health> {
    let open = status.rfind('(')?;
    let inner = status[open + 1..].split(')').next()?;
    Health::parse(inner.strip_prefix("health:").unwrap_or(inner))
}

/// Exit code from a status text: "Exited (137) 5 seconds ago" → 137.
pub fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.trim_start().strip_prefix("Exited (")?;
    rest.split(')').next()?.trim().parse().ok()
}

/// `State.Health` of an inspected container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HealthState {
    /// `starting`, `healthy`, `unhealthy` (or `none`).
    #[serde(rename = "Status")]
    pub status: String,
}

impl HealthState {
    pub fn health(&self) -> Option<Health> {
        Health::parse(&self.status)
    }
}

/// `State` of an inspected container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    pub status: String,
    pub running: bool,
    pub exit_code: i64,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub health: Option<HealthState>,
    /// RFC 3339; `0001-01-01T00:00:00Z` when never started.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
}

/// The resource limits of an inspected container (0 = none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default)]
    pub memory: i64,
    #[serde(default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub cgroup_parent: String,
}

/// A mount of an inspected container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`, …
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(rename = "RW", default)]
    pub rw: bool,
}

/// `Config` of an inspected container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
    #[serde(default)]
    pub image: String,
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerDetails {
    pub id: String,
    /// With the engine's leading `/`.
    pub name: String,
    pub state: ContainerState,
    #[serde(default, deserialize_with = "null_default")]
    pub host_config: HostConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub mounts: Vec<Mount>,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
}

impl ContainerDetails {
    pub fn project(&self) -> Option<&str> {
        self.config.labels.get(PROJECT_LABEL).map(String::as_str)
    }

    pub fn service(&self) -> Option<&str> {
        self.config.labels.get(SERVICE_LABEL).map(String::as_str)
    }
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
    #[serde(default)]
    pub mountpoint: String,
    /// RFC 3339, as the engine reports it (`2026-01-20T16:29:14Z`).
    #[serde(default, rename = "CreatedAt")]
    pub created_at: String,
}

impl Volume {
    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }
}

/// `GET /system/df` (only the volumes are read).
#[derive(Debug, Deserialize)]
pub(crate) struct DiskUsage {
    #[serde(rename = "Volumes", default, deserialize_with = "null_default")]
    pub volumes: Vec<DfVolume>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DfVolume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "UsageData", default)]
    pub usage_data: Option<UsageData>,
}

/// A volume's measured size; `-1` when the engine did not measure it.
#[derive(Debug, Deserialize)]
pub(crate) struct UsageData {
    #[serde(rename = "Size")]
    pub size: i64,
}

/// `GET /volumes`.
#[derive(Debug, Deserialize)]
pub(crate) struct VolumeList {
    #[serde(rename = "Volumes", default, deserialize_with = "null_default")]
    pub volumes: Vec<Volume>,
}

/// One address range of a network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// A network's address management.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Ipam {
    #[serde(rename = "Config", default, deserialize_with = "null_default")]
    pub config: Vec<IpamConfig>,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub id: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Labels,
    #[serde(rename = "IPAM", default, deserialize_with = "null_default")]
    pub ipam: Ipam,
}

impl Network {
    /// The subnets it owns (`172.20.0.0/16`).
    pub fn subnets(&self) -> Vec<&str> {
        self.ipam
            .config
            .iter()
            .filter_map(|c| c.subnet.as_deref())
            .collect()
    }

    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }
}

/// `GET /info`: the host as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Info {
    /// Bytes of memory on the engine's host.
    #[serde(rename = "MemTotal", default)]
    pub mem_total: u64,
    #[serde(rename = "NCPU", default)]
    pub ncpu: u32,
    #[serde(rename = "ServerVersion", default)]
    pub server_version: String,
    #[serde(rename = "OperatingSystem", default)]
    pub operating_system: String,
    #[serde(rename = "KernelVersion", default)]
    pub kernel_version: String,
    /// `cgroupfs` or `systemd`.
    #[serde(rename = "CgroupDriver", default)]
    pub cgroup_driver: String,
    /// `1` or `2`.
    #[serde(rename = "CgroupVersion", default)]
    pub cgroup_version: String,
    #[serde(rename = "DockerRootDir", default)]
    pub docker_root_dir: String,
    #[serde(rename = "Containers", default)]
    pub containers: u64,
    #[serde(rename = "ContainersRunning", default)]
    pub containers_running: u64,
}

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Version {
    /// The engine's release (`20.10.24`).
    #[serde(rename = "Version", default)]
    pub version: String,
    /// The newest API version it speaks (`1.41`).
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    pub min_api_version: String,
    #[serde(rename = "Os", default)]
    pub os: String,
    #[serde(rename = "Arch", default)]
    pub arch: String,
}

/// One sample of a container's resource use, as `docker stats` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// CPU time used so far, nanoseconds (cumulative: comparing two reads tells whether
    /// the container did anything in between).
    pub cpu_total_ns: u64,
    /// Percent of one CPU (200.0 = two CPUs busy), as `docker stats` shows it.
    pub cpu_percent: f64,
    /// Bytes in use, page cache not counted (as `docker stats` does).
    pub memory_usage: u64,
    /// The container's memory limit, or the host's memory when it has none.
    pub memory_limit: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
struct RawCpuUsage {
    #[serde(default)]
    total_usage: u64,
    #[serde(default, deserialize_with = "null_default")]
    percpu_usage: Vec<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawCpu {
    #[serde(default)]
    cpu_usage: RawCpuUsage,
    #[serde(default)]
    system_cpu_usage: u64,
    #[serde(default)]
    online_cpus: u32,
}

#[derive(Debug, Default, Deserialize)]
struct RawMemory {
    #[serde(default)]
    usage: u64,
    #[serde(default)]
    limit: u64,
    #[serde(default, deserialize_with = "null_default")]
    stats: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawNet {
    #[serde(default)]
    rx_bytes: u64,
    #[serde(default)]
    tx_bytes: u64,
}

/// `GET /containers/{id}/stats?stream=false`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawStats {
    #[serde(default, deserialize_with = "null_default")]
    cpu_stats: RawCpu,
    #[serde(default, deserialize_with = "null_default")]
    precpu_stats: RawCpu,
    #[serde(default, deserialize_with = "null_default")]
    memory_stats: RawMemory,
    #[serde(default, deserialize_with = "null_default")]
    networks: BTreeMap<String, RawNet>,
}

impl RawStats {
    /// The figures `docker stats` shows, computed the way it computes them.
    pub(crate) fn summarize(&self) -> Stats {
        let (cpu, pre) = (&self.cpu_stats, &self.precpu_stats);
        let cpu_delta = cpu.cpu_usage.total_usage as f64 - pre.cpu_usage.total_usage as f64;
        let system_delta = cpu.system_cpu_usage as f64 - pre.system_cpu_usage as f64;
        let cpus = match cpu.online_cpus {
            0 => cpu.cpu_usage.percpu_usage.len() as f64,
            n => f64::from(n),
        };
        let cpu_percent = if cpu_delta > 0.0 && system_delta > 0.0 {
            cpu_delta / system_delta * cpus * 100.0
        } else {
            0.0
        };
        let mem = &self.memory_stats;
        // Page cache the kernel can drop is not "used": cgroup v1 reports it as
        // `total_inactive_file`, v2 as `inactive_file`.
        let below_usage = |key: &str| mem.stats.get(key).copied().filter(|c| *c < mem.usage);
        let cache = below_usage("total_inactive_file")
            .or_else(|| below_usage("inactive_file"))
            .unwrap_or(0);
        Stats {
            cpu_total_ns: cpu.cpu_usage.total_usage,
            cpu_percent,
            memory_usage: mem.usage - cache,
            memory_limit: mem.limit,
            net_rx_bytes: self.networks.values().map(|n| n.rx_bytes).sum(),
            net_tx_bytes: self.networks.values().map(|n| n.tx_bytes).sum(),
        }
    }
}

/// A created container's id, and the engine's warnings.
#[derive(Debug, Deserialize)]
pub(crate) struct Created {
    #[serde(rename = "Id")]
    pub id: String,
}

/// The result of `POST /containers/{id}/wait`.
#[derive(Debug, Deserialize)]
pub(crate) struct WaitResult {
    #[serde(rename = "StatusCode")]
    pub status_code: i64,
}

/// The body of an API error.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiMessage {
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_exit_code_come_from_the_status_text() {
        assert_eq!(
            health_from_status("Up 3 minutes (healthy)"),
            Some(Health::Healthy)
        );
        assert_eq!(
            health_from_status("Up 3 minutes (unhealthy)"),
            Some(Health::Unhealthy)
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(health_from_status("Up 3 minutes"), None);
        assert_eq!(health_from_status("Up 3 minutes (Paused)"), None);
        assert_eq!(health_from_status("Exited (0) 1 hour ago"), None);
        assert_eq!(health_from_status("Created"), None);
        assert_eq!(health_from_status("(("), None);

        assert_eq!(
            exit_code_from_status("Exited (137) 5 seconds ago"),
            Some(137)
        );
        assert_eq!(
            exit_code_from_status("Exited (0) About a minute ago"),
            Some(0)
        );
        assert_eq!(exit_code_from_status("Exited (-1) now"), Some(-1));
        assert_eq!(exit_code_from_status("Up 2 hours (healthy)"), None);
        assert_eq!(exit_code_from_status("Exited (x)"), None);
        assert_eq!(exit_code_from_status("Exited ("), None);
        assert_eq!(exit_code_from_status(""), None);
    }

    #[test]
    fn container_rows_read_with_nulls_and_unknown_fields() {
        let json = r#"[{"Id":"abc","Names":["/ktrdr--a-db-1"],"Image":"postgres","ImageID":"sha",
            "Command":"x","Created":1700000000,"Ports":[{"IP":"127.0.0.1","PrivatePort":5432,
            "PublicPort":25432,"Type":"tcp"},{"PrivatePort":80,"Type":"tcp"}],
            "Labels":{"com.docker.compose.project":"ktrdr--a","com.docker.compose.service":"db"},
            "State":"running","Status":"Up 2 minutes (healthy)","HostConfig":{},"Mounts":null},
            {"Id":"def","Names":null,"Image":"x","Created":1,"Ports":null,"Labels":null,
            "State":"exited","Status":"Exited (3) 1 second ago"}]"#;
        let rows: Vec<ContainerSummary> = serde_json::from_str(json).unwrap();
        assert_eq!(rows[0].name(), "ktrdr--a-db-1");
        assert_eq!(rows[0].project(), Some("ktrdr--a"));
        assert_eq!(rows[0].service(), Some("db"));
        assert_eq!(rows[0].health(), Some(Health::Healthy));
        assert_eq!(rows[0].ports[0].public_port, Some(25432));
        assert_eq!(rows[0].ports[1].ip, None);
        assert_eq!(rows[1].name(), "");
        assert_eq!(rows[1].project(), None);
        assert_eq!(rows[1].exit_code(), Some(3));
    }

    #[test]
    fn inspect_networks_and_volumes_read() {
        let json = r#"{"Id":"abc","Name":"/c","State":{"Status":"exited","Running":false,
            "Paused":false,"OOMKilled":true,"ExitCode":137,"StartedAt":"2024-01-01T00:00:00Z",
            "FinishedAt":"2024-01-01T00:01:00Z","Health":{"Status":"unhealthy","FailingStreak":3}},
            "HostConfig":{"Memory":536870912,"NanoCpus":1500000000,"CgroupParent":""},
            "Mounts":[{"Type":"volume","Name":"v","Source":"/var/lib/docker/volumes/v/_data",
            "Destination":"/data","Driver":"local","RW":true}],
            "Config":{"Labels":{"com.docker.compose.project":"p"},"Image":"busybox"}}"#;
        let d: ContainerDetails = serde_json::from_str(json).unwrap();
        assert!(d.state.oom_killed);
        assert_eq!(d.state.exit_code, 137);
        assert_eq!(
            d.state.health.as_ref().and_then(HealthState::health),
            Some(Health::Unhealthy)
        );
        assert_eq!(d.host_config.nano_cpus, 1_500_000_000);
        assert_eq!(d.mounts[0].name.as_deref(), Some("v"));
        assert_eq!(d.project(), Some("p"));

        let nets: Vec<Network> = serde_json::from_str(
            r#"[{"Name":"n","Id":"1","IPAM":{"Driver":"default","Config":[{"Subnet":"172.30.0.0/16","Gateway":"172.30.0.1"}]},"Labels":{}},
                {"Name":"host","Id":"2","IPAM":{"Config":null},"Labels":null}]"#,
        )
        .unwrap();
        assert_eq!(nets[0].subnets(), vec!["172.30.0.0/16"]);
        assert!(nets[1].subnets().is_empty());

        let vols: VolumeList = serde_json::from_str(
            r#"{"Volumes":[{"Name":"v","Labels":null,"Mountpoint":"/m","Driver":"local"}],"Warnings":null}"#,
        )
        .unwrap();
        assert_eq!(vols.volumes[0].name, "v");
        assert!(vols.volumes[0].labels.is_empty());
        let none: VolumeList = serde_json::from_str(r#"{"Volumes":null}"#).unwrap();
        assert!(none.volumes.is_empty());
    }

    #[test]
    fn cpu_and_memory_are_computed_like_docker_stats() {
        // 0.5 s of CPU over 2 s of system time on 4 CPUs: 25 % of the host = 100 % of one.
        let json = r#"{"cpu_stats":{"cpu_usage":{"total_usage":1500000000},"system_cpu_usage":10000000000,"online_cpus":4},
            "precpu_stats":{"cpu_usage":{"total_usage":1000000000},"system_cpu_usage":8000000000},
            "memory_stats":{"usage":1000,"limit":4000,"stats":{"inactive_file":200}},
            "networks":{"eth0":{"rx_bytes":10,"tx_bytes":20},"eth1":{"rx_bytes":1,"tx_bytes":2}}}"#;
        let s = serde_json::from_str::<RawStats>(json).unwrap().summarize();
        assert!((s.cpu_percent - 100.0).abs() < 1e-9, "{}", s.cpu_percent);
        assert_eq!((s.memory_usage, s.memory_limit), (800, 4000));
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (11, 22));

        // cgroup v1 without online_cpus: the per-CPU list counts the CPUs.
        let json = r#"{"cpu_stats":{"cpu_usage":{"total_usage":300,"percpu_usage":[1,2]},"system_cpu_usage":1000},
            "precpu_stats":{"cpu_usage":{"total_usage":100},"system_cpu_usage":600},
            "memory_stats":{"usage":500,"limit":900,"stats":{"total_inactive_file":600}}}"#;
        let s = serde_json::from_str::<RawStats>(json).unwrap().summarize();
        assert!((s.cpu_percent - 100.0).abs() < 1e-9, "{}", s.cpu_percent);
        // Cache larger than usage is not subtracted.
        assert_eq!(s.memory_usage, 500);
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (0, 0));

        // A stopped container: everything empty, no division by zero.
        let s = serde_json::from_str::<RawStats>(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":0}},"precpu_stats":{},"memory_stats":{},"networks":null}"#,
        )
        .unwrap()
        .summarize();
        assert_eq!(s.cpu_percent, 0.0);
        assert_eq!(s.memory_usage, 0);
    }
}
