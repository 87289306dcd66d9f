//! PostgreSQL for the multi-node tests: a fresh database on the machine's
//! server per test, or a private cluster that a test may stop and start.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// The server the tests use; they fail, never skip, when it is not there.
pub fn server_url() -> String {
    std::env::var("VOUCHERD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin_execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL at {url} is not reachable ({error}); the multi-node tests need it \
                 (start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`)"
            )
        });
    let driver = tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    drop(client);
    let _ = driver.await;
}

/// A database of its own on the shared server, dropped at the end.
pub struct TestDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(server: &str) -> TestDatabase {
        let name = format!("voucherd_nodes_{}", uuid::Uuid::new_v4().simple());
        admin_execute(server, &format!("CREATE DATABASE {name}")).await;
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("a database URL ends in /database: {server}"),
        };
        TestDatabase {
            server: server.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime; the cleanup gets its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(admin_execute(
                &server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ));
        });
        let _ = cleanup.join();
    }
}

/// A PostgreSQL cluster of the test's own, run as the `postgres` user on a
/// free port, so that the test can kill it without touching anyone else's.
pub struct PrivateCluster {
    directory: tempfile::TempDir,
    pub port: u16,
}

const BIN: &str = "/usr/lib/postgresql";

fn postgres_bin(program: &str) -> PathBuf {
    let version = std::fs::read_dir(BIN)
        .expect("PostgreSQL's binaries under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .max()
        .expect("an installed PostgreSQL version");
    PathBuf::from(BIN).join(version).join("bin").join(program)
}

fn as_postgres(program: &str, arguments: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(postgres_bin(program))
        .args(arguments)
        .status()
        .unwrap_or_else(|error| panic!("running {program}: {error}"));
    assert!(status.success(), "{program} {arguments:?} failed: {status}");
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let directory = tempfile::Builder::new()
            .prefix("voucherd-pg-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(directory.path(), Some(postgres_uid()), None)
            .expect("handing the directory to postgres");
        let data = directory.path().join("data");
        let data_text = data.to_str().unwrap();
        as_postgres(
            "initdb",
            &[
                "-D",
                data_text,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PrivateCluster { directory, port };
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> String {
        self.directory
            .path()
            .join("data")
            .to_string_lossy()
            .into_owned()
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.directory.path().display()
        );
        let log = self.directory.path().join("postgres.log");
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Immediate mode: no checkpoint, connections cut, as a crash would.
    pub fn stop_immediately(&self) {
        as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn restart(&self) {
        self.pg_ctl_start();
    }
}

fn postgres_uid() -> u32 {
    let output = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id -u postgres");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a uid")
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(postgres_bin("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .status();
    }
}

/// A primary and a synchronous standby of the test's own: a commit is
/// acknowledged only once the standby has it, so promoting the standby
/// after the primary dies loses nothing a node acknowledged.
pub struct ReplicatedPair {
    directory: tempfile::TempDir,
    pub primary_port: u16,
    pub standby_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ReplicatedPair {
    pub fn start() -> ReplicatedPair {
        let directory = tempfile::Builder::new()
            .prefix("voucherd-pg-pair-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(directory.path(), Some(postgres_uid()), None)
            .expect("handing the directory to postgres");
        let pair = ReplicatedPair {
            directory,
            primary_port: free_port(),
            standby_port: free_port(),
        };
        as_postgres(
            "initdb",
            &[
                "-D",
                &pair.data("primary"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pair.pg_ctl_start(
            "primary",
            pair.primary_port,
            "-c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on \
             -c synchronous_standby_names=standby",
        );
        as_postgres(
            "pg_basebackup",
            &[
                "-d",
                &format!(
                    "host=127.0.0.1 port={} user=postgres application_name=standby",
                    pair.primary_port
                ),
                "-D",
                &pair.data("standby"),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        // Once promoted it waits for no standby of its own.
        pair.pg_ctl_start("standby", pair.standby_port, "-c hot_standby=on");
        pair.wait_until_synchronous();
        pair
    }

    fn data(&self, which: &str) -> String {
        self.directory
            .path()
            .join(which)
            .to_string_lossy()
            .into_owned()
    }

    fn pg_ctl_start(&self, which: &str, port: u16, settings: &str) {
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on {settings}",
            self.directory.path().display()
        );
        let log = self.directory.path().join(format!("{which}.log"));
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(which),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    fn wait_until_synchronous(&self) {
        for _ in 0..300 {
            let output = Command::new(postgres_bin("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.primary_port.to_string(),
                    "-U",
                    "postgres",
                    "-tAc",
                ])
                .arg(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
                )
                .output()
                .expect("psql");
            if String::from_utf8_lossy(&output.stdout).trim() == "sync" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the standby never became synchronous");
    }

    /// Both hosts; a node connects to whichever takes writes.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }

    /// The data centre goes dark: the primary dies without a checkpoint.
    pub fn kill_primary(&self) {
        as_postgres(
            "pg_ctl",
            &["-D", &self.data("primary"), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn promote_standby(&self) {
        as_postgres("pg_ctl", &["-D", &self.data("standby"), "-w", "promote"]);
    }
}

impl Drop for ReplicatedPair {
    fn drop(&mut self) {
        for which in ["primary", "standby"] {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(postgres_bin("pg_ctl"))
                .args(["-D", &self.data(which), "-m", "immediate", "stop"])
                .status();
        }
    }
}
