//! The deployment examples (`deploy/`) and the `Dockerfile` agree with each
//! other and with portcullis: every YAML file parses, the configurations
//! they carry pass `portcullis check` with the files their volumes provide,
//! and image names, ports, probes and security settings line up. Each
//! Kubernetes example (the sidecar, and three replicas with Redis) is
//! checked the same way.
//!
//! No Docker engine or cluster is needed: the files are read as text and
//! YAML (with `yaml-rust2`, the parser the `config` crate already uses), and
//! only `portcullis check` is run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// The one image name used everywhere: manifests, compose and docs.
const IMAGE: &str = "ghcr.io/portcullis/portcullis:0.1.0";
/// Where the image expects its configuration (the Dockerfile's CMD).
const CONFIG_DIR: &str = "/etc/portcullis";
/// The Kubernetes examples, one directory each: the sidecar, and the same
/// pod as three replicas sharing sessions through Redis.
const KUBERNETES_EXAMPLES: [&str; 2] = ["deploy/kubernetes", THREE_REPLICAS];
const THREE_REPLICAS: &str = "deploy/kubernetes/three-replicas";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every document of a YAML file.
fn load_yaml(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("{}: not YAML: {error}", path.display()))
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if matches!(
            path.extension().and_then(|ext| ext.to_str()),
            Some("yaml" | "yml")
        ) {
            found.push(path);
        }
    }
}

/// The YAML files directly in `dir`, not in its subdirectories, sorted.
fn yaml_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|ext| ext.to_str()),
                    Some("yaml" | "yml")
                )
        })
        .collect();
    found.sort();
    found
}

fn str_at<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {yaml:?}"))
}

fn int_at(yaml: &Yaml, what: &str) -> i64 {
    yaml.as_i64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {yaml:?}"))
}

fn list_at<'a>(yaml: &'a Yaml, what: &str) -> &'a [Yaml] {
    yaml.as_vec()
        .unwrap_or_else(|| panic!("{what} is not a list: {yaml:?}"))
}

/// Whole seconds of a duration as the configuration writes it (`30`, `30s`, `2m`).
fn seconds(duration: &Yaml) -> i64 {
    if let Some(seconds) = duration.as_i64() {
        return seconds;
    }
    let text = str_at(duration, "a duration");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().expect("a duration starts with a number");
    number
        * match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            other => panic!("unexpected duration unit `{other}` in `{text}`"),
        }
}

// ---- the Dockerfile ---------------------------------------------------------

/// The instructions of the Dockerfile's final (runtime) stage, and the build.
struct Dockerfile {
    runtime_base: String,
    builder_runs: Vec<String>,
    expose: Vec<u16>,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    volumes: Vec<String>,
    healthchecks: Vec<String>,
}

impl Dockerfile {
    fn parse() -> Self {
        let text = read("Dockerfile");
        // Continuation lines joined; comments and blank lines dropped.
        let mut instructions = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let line = line.trim();
            if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(start) => current.push_str(start),
                None => {
                    current.push_str(line);
                    instructions.push(std::mem::take(&mut current));
                }
            }
        }
        let stages: Vec<usize> = instructions
            .iter()
            .enumerate()
            .filter(|(_, instruction)| instruction.starts_with("FROM "))
            .map(|(at, _)| at)
            .collect();
        assert!(stages.len() >= 2, "a multi-stage Dockerfile");
        let runtime_at = *stages.last().unwrap();
        let json = |text: &str| -> Vec<String> {
            serde_json::from_str(text.trim())
                .unwrap_or_else(|_| panic!("exec form (a JSON list) expected: {text}"))
        };
        let mut dockerfile = Dockerfile {
            runtime_base: instructions[runtime_at]["FROM ".len()..].trim().to_owned(),
            builder_runs: instructions[..runtime_at]
                .iter()
                .filter_map(|instruction| instruction.strip_prefix("RUN "))
                .map(str::to_owned)
                .collect(),
            expose: Vec::new(),
            user: String::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            volumes: Vec::new(),
            healthchecks: Vec::new(),
        };
        for instruction in &instructions[runtime_at..] {
            let (keyword, rest) = instruction.split_once(' ').unwrap_or((instruction, ""));
            match keyword {
                "EXPOSE" => dockerfile.expose.extend(
                    rest.split_whitespace()
                        .map(|port| port.trim_end_matches("/tcp").parse::<u16>().unwrap()),
                ),
                "USER" => dockerfile.user = rest.trim().to_owned(),
                "ENTRYPOINT" => dockerfile.entrypoint = json(rest),
                "CMD" => dockerfile.cmd = json(rest),
                "VOLUME" => dockerfile.volumes.push(rest.trim().to_owned()),
                "HEALTHCHECK" => dockerfile.healthchecks.push(rest.trim().to_owned()),
                _ => {}
            }
        }
        dockerfile
    }

    /// The numeric uid of `USER uid[:gid]`.
    fn uid(&self) -> i64 {
        let user = self.user.split(':').next().unwrap();
        user.parse().unwrap_or_else(|_| {
            panic!("USER `{user}` is not numeric: runAsNonRoot cannot verify a name")
        })
    }

    /// The `--config` path the image runs with.
    fn config_path(&self) -> &str {
        let at = self
            .cmd
            .iter()
            .position(|arg| arg == "--config")
            .expect("CMD names --config");
        &self.cmd[at + 1]
    }
}

#[test]
fn dockerfile_runs_portcullis_as_nonroot_from_distroless() {
    let dockerfile = Dockerfile::parse();
    assert!(
        dockerfile
            .runtime_base
            .starts_with("gcr.io/distroless/cc-debian12"),
        "runtime base: {}",
        dockerfile.runtime_base
    );
    assert!(
        dockerfile
            .builder_runs
            .iter()
            .any(|run| run.contains("cargo build --release --locked")),
        "the builder builds with --release --locked"
    );
    assert_eq!(dockerfile.uid(), 65532, "distroless' nonroot user");
    assert_eq!(dockerfile.entrypoint, ["portcullis"]);
    assert_eq!(dockerfile.cmd[0], "run");
    assert_eq!(
        dockerfile.config_path(),
        format!("{CONFIG_DIR}/config.yaml")
    );
    assert_eq!(dockerfile.volumes, [CONFIG_DIR]);
    assert_eq!(dockerfile.expose, [8443, 9901]);
    // distroless has no shell: the HEALTHCHECK is exec form, portcullis probing itself.
    assert_eq!(
        dockerfile.healthchecks.len(),
        1,
        "{:?}",
        dockerfile.healthchecks
    );
    let healthcheck = &dockerfile.healthchecks[0];
    assert!(
        healthcheck.contains(r#"CMD ["portcullis", "healthcheck""#)
            && healthcheck.contains(":9901/healthz"),
        "an exec-form HEALTHCHECK on the admin port: {healthcheck}"
    );

    let dockerignore = read(".dockerignore");
    for entry in [
        "target/",
        ".git/",
        "tests/oidc/node_modules/",
        "bench/results/",
    ] {
        assert!(
            dockerignore.lines().any(|line| line.trim() == entry),
            ".dockerignore lists {entry}"
        );
    }
}

// ---- YAML everywhere ----------------------------------------------------------

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    yaml_files(&repo().join("deploy"), &mut files);
    files.sort();
    assert!(files.len() >= 6, "deploy/ holds the examples: {files:?}");
    for file in &files {
        let documents = load_yaml(file);
        assert!(!documents.is_empty(), "{}: empty", file.display());
        for document in &documents {
            assert!(
                document.is_hash(),
                "{}: a document is not a mapping",
                file.display()
            );
        }
    }
}

/// Every Kubernetes document of one example (the YAML files directly in
/// its directory), by kind.
struct Manifests {
    documents: Vec<(PathBuf, Yaml)>,
}

impl Manifests {
    fn load(example: &str) -> Self {
        let files = yaml_files_in(&repo().join(example));
        assert!(!files.is_empty(), "{example} holds manifests");
        let documents = files
            .into_iter()
            .flat_map(|file| {
                load_yaml(&file)
                    .into_iter()
                    .map(move |document| (file.clone(), document))
            })
            .collect();
        Manifests { documents }
    }

    fn one(&self, kind: &str) -> &Yaml {
        let mut found = self
            .documents
            .iter()
            .filter(|(_, document)| document["kind"].as_str() == Some(kind));
        let (_, document) = found.next().unwrap_or_else(|| panic!("no {kind}"));
        assert!(found.next().is_none(), "one {kind}");
        document
    }

    fn named(&self, kind: &str, name: &str) -> &Yaml {
        self.documents
            .iter()
            .map(|(_, document)| document)
            .find(|document| {
                document["kind"].as_str() == Some(kind)
                    && document["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }

    /// The Deployment whose pod runs portcullis (beside it there may be
    /// others, such as Redis).
    fn deployment(&self) -> &Yaml {
        let mut found = self
            .documents
            .iter()
            .map(|(_, document)| document)
            .filter(|document| {
                document["kind"].as_str() == Some("Deployment")
                    && document["spec"]["template"]["spec"]["containers"]
                        .as_vec()
                        .is_some_and(|containers| {
                            containers
                                .iter()
                                .any(|container| container["name"].as_str() == Some("portcullis"))
                        })
            });
        let deployment = found.next().expect("a Deployment runs portcullis");
        assert!(found.next().is_none(), "one Deployment runs portcullis");
        deployment
    }

    /// The object of `kind` named as the portcullis Deployment (its
    /// Service, its PodDisruptionBudget).
    fn of_deployment(&self, kind: &str) -> &Yaml {
        let name = str_at(
            &self.deployment()["metadata"]["name"],
            "the Deployment's name",
        );
        self.named(kind, name)
    }

    fn pod(&self) -> &Yaml {
        &self.deployment()["spec"]["template"]
    }

    fn container(&self, name: &str) -> &Yaml {
        list_at(&self.pod()["spec"]["containers"], "containers")
            .iter()
            .find(|container| container["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    /// The portcullis configuration held by the ConfigMap the pod mounts.
    fn config(&self) -> (String, Yaml) {
        let text = str_at(
            &self.one("ConfigMap")["data"]["config.yaml"],
            "the ConfigMap's config.yaml",
        )
        .to_owned();
        let yaml = YamlLoader::load_from_str(&text).unwrap().remove(0);
        (text, yaml)
    }
}

#[test]
fn every_kubernetes_document_is_a_namespace_free_object() {
    // Every manifest under deploy/kubernetes belongs to an example checked here.
    let mut all = Vec::new();
    yaml_files(&repo().join("deploy/kubernetes"), &mut all);
    let examples: usize = KUBERNETES_EXAMPLES
        .iter()
        .map(|example| yaml_files_in(&repo().join(example)).len())
        .sum();
    assert_eq!(
        all.len(),
        examples,
        "a directory under deploy/kubernetes is missing from KUBERNETES_EXAMPLES: {all:?}"
    );

    for example in KUBERNETES_EXAMPLES {
        let manifests = Manifests::load(example);
        for (file, document) in &manifests.documents {
            let at = file.display();
            str_at(&document["apiVersion"], &format!("{at}: apiVersion"));
            str_at(&document["kind"], &format!("{at}: kind"));
            str_at(
                &document["metadata"]["name"],
                &format!("{at}: metadata.name"),
            );
            assert!(
                document["metadata"]["namespace"].is_badvalue(),
                "{at}: no namespace, so it applies to any"
            );
        }
        manifests.deployment();
        manifests.of_deployment("Service");
        manifests.of_deployment("PodDisruptionBudget");
        manifests.one("ConfigMap");
        manifests.named("Secret", "portcullis-secrets");
    }
}

/// Resolves a probe's or Service's port (a number or a container port name).
fn container_port(container: &Yaml, port: &Yaml) -> i64 {
    if let Some(number) = port.as_i64() {
        return number;
    }
    let name = str_at(port, "a port");
    list_at(&container["ports"], "ports")
        .iter()
        .find(|entry| entry["name"].as_str() == Some(name))
        .map(|entry| int_at(&entry["containerPort"], "containerPort"))
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

fn address_port(address: &Yaml) -> (SocketAddr, i64) {
    let address: SocketAddr = str_at(address, "an address").parse().unwrap();
    (address, i64::from(address.port()))
}

#[test]
fn the_sidecar_agrees_with_the_image_and_its_configuration() {
    for example in KUBERNETES_EXAMPLES {
        sidecar_agrees_with_the_image_and_its_configuration(example);
    }
}

fn sidecar_agrees_with_the_image_and_its_configuration(example: &str) {
    let manifests = Manifests::load(example);
    let dockerfile = Dockerfile::parse();
    let (_, config) = manifests.config();
    let portcullis = manifests.container("portcullis");

    assert_eq!(str_at(&portcullis["image"], "image"), IMAGE);
    let https = container_port(portcullis, &Yaml::String("https".into()));
    let admin = container_port(portcullis, &Yaml::String("admin".into()));
    for port in [https, admin] {
        assert!(
            dockerfile.expose.contains(&u16::try_from(port).unwrap()),
            "{port} is EXPOSEd by the Dockerfile"
        );
    }

    // The ports the configuration listens on are the container's.
    let listeners = list_at(&config["listeners"], "listeners");
    assert_eq!(listeners.len(), 1);
    assert_eq!(address_port(&listeners[0]["address"]).1, https);
    assert!(
        !listeners[0]["tls"].is_badvalue(),
        "the sidecar terminates TLS"
    );
    let (admin_address, admin_port) = address_port(&config["admin"]["address"]);
    assert_eq!(admin_port, admin);
    assert!(
        admin_address.ip().is_unspecified(),
        "the kubelet probes the pod IP, so admin listens on it: {admin_address}"
    );

    // Probes on the admin port.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &portcullis[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            container_port(portcullis, &get["port"]),
            admin,
            "{probe} port"
        );
    }

    // The app is reached on the pod's loopback.
    let rule = &list_at(&listeners[0]["rules"], "rules")[0];
    let forward = list_at(&rule["actions"], "actions")
        .iter()
        .find_map(|action| action["forward"]["target"].as_str())
        .expect("the rule forwards");
    assert!(forward.starts_with("http://127.0.0.1:"), "{forward}");
    str_at(&manifests.container("app")["image"], "the app's image");

    // The Service sends 443 to the HTTPS port, and selects these pods.
    let service = manifests.of_deployment("Service");
    let ports = list_at(&service["spec"]["ports"], "Service ports");
    assert_eq!(
        ports.len(),
        1,
        "only HTTPS: the admin port stays off the Service"
    );
    assert_eq!(int_at(&ports[0]["port"], "Service port"), 443);
    assert_eq!(container_port(portcullis, &ports[0]["targetPort"]), https);
    let labels = &manifests.pod()["metadata"]["labels"];
    for (selector, at) in [
        (&service["spec"]["selector"], "Service"),
        (
            &manifests.deployment()["spec"]["selector"]["matchLabels"],
            "Deployment",
        ),
        (
            &manifests.of_deployment("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
            "PodDisruptionBudget",
        ),
    ] {
        for (key, value) in selector
            .as_hash()
            .unwrap_or_else(|| panic!("{at} selector"))
        {
            assert_eq!(
                &labels[str_at(key, "label")],
                value,
                "{at} selects the pods"
            );
        }
    }
}

#[test]
fn the_sidecar_is_locked_down_and_drains_before_it_is_killed() {
    for example in KUBERNETES_EXAMPLES {
        sidecar_is_locked_down_and_drains_before_it_is_killed(example);
    }
}

fn sidecar_is_locked_down_and_drains_before_it_is_killed(example: &str) {
    let manifests = Manifests::load(example);
    let dockerfile = Dockerfile::parse();
    let pod = &manifests.pod()["spec"];
    let portcullis = manifests.container("portcullis");
    let security = &portcullis["securityContext"];

    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["runAsUser"].as_i64(), Some(dockerfile.uid()));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    let dropped = list_at(&security["capabilities"]["drop"], "capabilities.drop");
    assert!(dropped.contains(&Yaml::String("ALL".into())));
    for seccomp in [
        &security["seccompProfile"],
        &pod["securityContext"]["seccompProfile"],
    ] {
        assert_eq!(seccomp["type"].as_str(), Some("RuntimeDefault"));
    }
    // Secret volumes are 0440 for group fsGroup: the nonroot user's group.
    assert_eq!(
        pod["securityContext"]["fsGroup"].as_i64(),
        Some(dockerfile.uid())
    );

    let resources = &portcullis["resources"];
    str_at(&resources["requests"]["cpu"], "requests.cpu");
    str_at(&resources["requests"]["memory"], "requests.memory");
    str_at(&resources["limits"]["memory"], "limits.memory");

    // SIGTERM comes after the preStop sleep; then in-flight requests get
    // shutdown_timeout. The kubelet must not SIGKILL before both are over.
    let (_, config) = manifests.config();
    let shutdown = seconds(&config["shutdown_timeout"]);
    let pre_stop = portcullis["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    let grace = int_at(
        &pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    assert!(
        grace > pre_stop + shutdown,
        "terminationGracePeriodSeconds {grace} > preStop {pre_stop} + shutdown_timeout {shutdown}"
    );
}

/// Whether a non-empty `matchLabels`-style selector matches `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    selector.as_hash().is_some_and(|selector| {
        !selector.is_empty()
            && selector
                .iter()
                .all(|(key, value)| labels[str_at(key, "a label")] == *value)
    })
}

/// The argument after `flag` in a container's args.
fn arg_after<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let at = args
        .iter()
        .position(|arg| *arg == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[at + 1]
}

#[test]
fn three_replicas_share_sessions_through_redis_without_stickiness() {
    let manifests = Manifests::load(THREE_REPLICAS);
    assert_eq!(
        int_at(&manifests.deployment()["spec"]["replicas"], "replicas"),
        3
    );
    let portcullis_labels = &manifests.pod()["metadata"]["labels"];

    // No stickiness: any replica serves any session.
    let service = manifests.of_deployment("Service");
    assert_ne!(
        service["spec"]["sessionAffinity"].as_str(),
        Some("ClientIP"),
        "replicas need no session affinity"
    );
    // Drains take one replica at a time.
    assert_eq!(
        manifests.of_deployment("PodDisruptionBudget")["spec"]["maxUnavailable"].as_i64(),
        Some(1)
    );

    // The session secret, signing key and Redis URL come from the one Secret
    // every replica mounts.
    let (_, config) = manifests.config();
    let sessions = &config["sessions"];
    assert_eq!(sessions["store"].as_str(), Some("redis"));
    let secrets_dir = format!("{CONFIG_DIR}/secrets");
    let mount = list_at(
        &manifests.container("portcullis")["volumeMounts"],
        "volumeMounts",
    )
    .iter()
    .find(|mount| mount["mountPath"].as_str() == Some(secrets_dir.as_str()))
    .expect("the secrets are mounted");
    let volume = list_at(&manifests.pod()["spec"]["volumes"], "volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the secrets' volume");
    assert_eq!(
        volume["secret"]["secretName"].as_str(),
        Some("portcullis-secrets")
    );
    let secrets = &manifests.named("Secret", "portcullis-secrets")["stringData"];
    let secret = |value: &Yaml, at: &str| -> String {
        let path = str_at(value, at);
        let key = path
            .strip_prefix(&format!("{secrets_dir}/"))
            .unwrap_or_else(|| panic!("{at}: {path} is in portcullis-secrets"));
        str_at(&secrets[key], &format!("portcullis-secrets' {key}")).to_owned()
    };
    secret(&sessions["secrets_file"], "sessions.secrets_file");
    secret(
        &config["signing"]["private_key_file"],
        "signing.private_key_file",
    );
    let url = secret(&sessions["redis"]["url_file"], "sessions.redis.url_file");
    let url = url.trim();

    // The URL names the Redis Service, its port and the ACL user.
    let (scheme, rest) = url.split_once("://").expect("the Redis URL has a scheme");
    assert!(matches!(scheme, "redis" | "rediss"), "{url}");
    let (userinfo, address) = rest.split_once('@').expect("the Redis URL names a user");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    let (host, port) = address
        .split('/')
        .next()
        .unwrap()
        .split_once(':')
        .expect("HOST:PORT");
    let port: i64 = port.parse().expect("a port number");
    let redis_service = manifests.named("Service", host);
    let service_port = list_at(&redis_service["spec"]["ports"], "Redis Service ports")
        .iter()
        .find(|entry| entry["port"].as_i64() == Some(port))
        .unwrap_or_else(|| panic!("the Redis Service has port {port}"));
    let redis_deployment = manifests
        .documents
        .iter()
        .map(|(_, document)| document)
        .find(|document| {
            document["kind"].as_str() == Some("Deployment")
                && selects(
                    &redis_service["spec"]["selector"],
                    &document["spec"]["template"]["metadata"]["labels"],
                )
        })
        .expect("a Deployment behind the Redis Service");
    let redis_pod = &redis_deployment["spec"]["template"];
    let redis = list_at(&redis_pod["spec"]["containers"], "containers")
        .iter()
        .find(|container| container["name"].as_str() == Some("redis"))
        .expect("a container named redis");
    container_port(redis, &service_port["targetPort"]);
    assert!(
        str_at(&redis["image"], "Redis' image").starts_with("redis:7"),
        "Redis 7.0 or newer: the store uses EXPIRE NX and GT"
    );
    assert_eq!(
        int_at(&redis_deployment["spec"]["replicas"], "Redis replicas"),
        1
    );
    assert_eq!(
        redis_deployment["spec"]["strategy"]["type"].as_str(),
        Some("Recreate"),
        "never two Redis pods, each with its own sessions, behind one Service"
    );
    assert_eq!(
        redis["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );

    // Only the portcullis pods reach Redis.
    let policy = manifests
        .documents
        .iter()
        .map(|(_, document)| document)
        .find(|document| {
            document["kind"].as_str() == Some("NetworkPolicy")
                && selects(
                    &document["spec"]["podSelector"]["matchLabels"],
                    &redis_pod["metadata"]["labels"],
                )
        })
        .expect("a NetworkPolicy for Redis");
    let peers: Vec<&Yaml> = list_at(&policy["spec"]["ingress"], "ingress")
        .iter()
        .flat_map(|rule| list_at(&rule["from"], "from"))
        .collect();
    assert!(
        !peers.is_empty()
            && peers
                .iter()
                .all(|peer| selects(&peer["podSelector"]["matchLabels"], portcullis_labels)),
        "only the portcullis pods may connect to Redis"
    );

    // Redis never evicts (an evicted index would let a back-channel logout
    // miss sessions), and its ACL user is the URL's, limited to the key
    // prefix and the commands the session store sends.
    let args: Vec<&str> = list_at(&redis["args"], "Redis args")
        .iter()
        .map(|arg| str_at(arg, "an argument"))
        .collect();
    assert_eq!(arg_after(&args, "--maxmemory-policy"), "noeviction");
    let (acl_dir, acl_name) = arg_after(&args, "--aclfile")
        .rsplit_once('/')
        .expect("an absolute ACL file path");
    let acl_mount = list_at(&redis["volumeMounts"], "Redis volumeMounts")
        .iter()
        .find(|mount| mount["mountPath"].as_str() == Some(acl_dir))
        .expect("the ACL file's directory is mounted");
    let acl_volume = list_at(&redis_pod["spec"]["volumes"], "Redis volumes")
        .iter()
        .find(|volume| volume["name"] == acl_mount["name"])
        .expect("the ACL file's volume");
    let acl_secret = manifests.named(
        "Secret",
        str_at(&acl_volume["secret"]["secretName"], "the ACL's Secret"),
    );
    let acl = str_at(&acl_secret["stringData"][acl_name], "the ACL file");
    assert!(
        acl.lines().any(|line| line.starts_with("user default off")),
        "the password-less default user is off:\n{acl}"
    );
    let rules: Vec<&str> = acl
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<&str>>())
        .find(|words| words.first() == Some(&"user") && words.get(1) == Some(&user))
        .unwrap_or_else(|| panic!("no ACL user {user}:\n{acl}"));
    let prefix = sessions["redis"]["key_prefix"]
        .as_str()
        .unwrap_or("portcullis:");
    let password_rule = format!(">{password}");
    let keys_rule = format!("~{prefix}*");
    for rule in ["on", "-@all", password_rule.as_str(), keys_rule.as_str()] {
        assert!(
            rules.contains(&rule),
            "ACL user {user} has `{rule}`: {rules:?}"
        );
    }
    for command in [
        "get",
        "set",
        "del",
        "expire",
        "zadd",
        "zrange",
        "zrem",
        "zremrangebyscore",
        "ping",
    ] {
        let rule = format!("+{command}");
        assert!(
            rules.contains(&rule.as_str()),
            "ACL user {user} may run {command}: {rules:?}"
        );
    }
}

// ---- portcullis check on the shipped configurations -----------------------------

/// A made-up value that `check` accepts for a secret file of this name.
fn secret_file_content(name: &str) -> String {
    match name {
        "session_secret" => "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n".to_owned(),
        "redis_url" => "redis://portcullis:test-password@redis:6379/0\n".to_owned(),
        name if name.ends_with(".pem") => rcgen::KeyPair::generate().unwrap().serialize_pem(),
        _ => "test-client-secret\n".to_owned(),
    }
}

/// Runs `portcullis check` on `config` with every `/etc/portcullis/...`
/// path moved under `root`; returns whether it passed, and its stderr.
fn check(config: &str, root: &Path, env: &BTreeMap<String, String>) -> (bool, String) {
    let text = config.replace(&format!("{CONFIG_DIR}/"), &format!("{}/", root.display()));
    let path = root.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("PORTCULLIS_CONFIG")
        .envs(env)
        .output()
        .expect("the portcullis binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_configmap_passes_check_with_the_files_the_pod_mounts() {
    for example in KUBERNETES_EXAMPLES {
        configmap_passes_check_with_the_files_the_pod_mounts(example);
    }
}

fn configmap_passes_check_with_the_files_the_pod_mounts(example: &str) {
    let manifests = Manifests::load(example);
    let portcullis = manifests.container("portcullis");
    let (text, _) = manifests.config();
    let root = tempfile::tempdir().unwrap();

    // The container runs `run --config <the ConfigMap's mount>/config.yaml`.
    let args: Vec<&str> = list_at(&portcullis["args"], "args")
        .iter()
        .map(|arg| str_at(arg, "an argument"))
        .collect();
    assert_eq!(args[0], "run");
    let config_at = args[args.iter().position(|arg| *arg == "--config").unwrap() + 1];

    // Every volume mount, with the files its Secret or ConfigMap provides.
    let volumes = list_at(&manifests.pod()["spec"]["volumes"], "volumes");
    let mut config_mounted = false;
    for mount in list_at(&portcullis["volumeMounts"], "volumeMounts") {
        let mount_path = str_at(&mount["mountPath"], "mountPath");
        let name = str_at(&mount["name"], "a mount's name");
        let volume = volumes
            .iter()
            .find(|volume| volume["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no volume {name}"));
        let relative = mount_path
            .strip_prefix(&format!("{CONFIG_DIR}/"))
            .unwrap_or_else(|| panic!("{mount_path} is under {CONFIG_DIR}"));
        let dir = root.path().join(relative);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            if secret == "portcullis-tls" {
                // kubernetes.io/tls: made by cert-manager or `kubectl create
                // secret tls`; `check` does not read TLS files.
                continue;
            }
            let secret = manifests.named("Secret", secret);
            let data = secret["stringData"]
                .as_hash()
                .expect("the Secret's stringData");
            for key in data.keys() {
                let key = str_at(key, "a Secret key");
                std::fs::write(dir.join(key), secret_file_content(key)).unwrap();
            }
        } else if let Some(config_map) = volume["configMap"]["name"].as_str() {
            let config_map = manifests.named("ConfigMap", config_map);
            assert_eq!(
                config_at,
                format!("{mount_path}/config.yaml"),
                "--config names the mounted ConfigMap's file"
            );
            assert!(!config_map["data"]["config.yaml"].is_badvalue());
            config_mounted = true;
        }
    }
    assert!(config_mounted, "the ConfigMap is mounted");

    // `${NAME}` in the configuration comes from the container's env.
    let env: BTreeMap<String, String> = list_at(&portcullis["env"], "env")
        .iter()
        .map(|var| {
            (
                str_at(&var["name"], "env name").to_owned(),
                str_at(&var["value"], "env value").to_owned(),
            )
        })
        .collect();
    let (passed, stderr) = check(&text, root.path(), &env);
    assert!(
        passed,
        "{example}: the ConfigMap's config.yaml passes check:\n{stderr}"
    );

    // And without the env, check names the missing variable.
    let (passed, stderr) = check(&text, root.path(), &BTreeMap::new());
    assert!(!passed && stderr.contains("OIDC_ISSUER"), "{stderr}");
}

// ---- docker-compose ---------------------------------------------------------------

/// The compose stacks: portcullis as the front door, and Caddy as the front
/// door with portcullis as its forward-auth service.
const COMPOSE: &str = "deploy/docker-compose";
const COMPOSE_CADDY: &str = "deploy/docker-compose/caddy";
/// The paths `portcullis dev-idp` serves its OIDC endpoints at, below its
/// base URL (docs/dev-idp.md).
const DEV_IDP_PATHS: [(&str, &str); 5] = [
    ("authorization_endpoint", "/authorize"),
    ("end_session_endpoint", "/logout"),
    ("token_endpoint", "/token"),
    ("user_info_endpoint", "/userinfo"),
    ("jwks_uri", "/jwks"),
];

/// One `compose.yaml`, read as YAML, with paths resolved from its directory.
struct Compose {
    dir: PathBuf,
    yaml: Yaml,
}

/// One `ports:` entry, `HOST_IP:HOST_PORT:CONTAINER_PORT`.
#[derive(Debug)]
struct Published {
    host_ip: String,
    host_port: u16,
    container_port: u16,
}

impl Compose {
    fn load(dir: &str) -> Self {
        let dir = repo().join(dir);
        let yaml = load_yaml(&dir.join("compose.yaml")).remove(0);
        Compose { dir, yaml }
    }

    fn names(&self) -> Vec<String> {
        self.yaml["services"]
            .as_hash()
            .expect("services as a mapping")
            .keys()
            .map(|name| str_at(name, "a service name").to_owned())
            .collect()
    }

    fn service(&self, name: &str) -> &Yaml {
        let service = &self.yaml["services"][name];
        assert!(
            service.is_hash(),
            "{}: no service {name}",
            self.dir.display()
        );
        service
    }

    /// Container path → host path, for each bind mount of `service`
    /// (named volumes are left out).
    fn mounts(&self, service: &str) -> BTreeMap<String, PathBuf> {
        let Some(volumes) = self.service(service)["volumes"].as_vec() else {
            return BTreeMap::new();
        };
        volumes
            .iter()
            .filter_map(|volume| {
                let mut parts = str_at(volume, "a volume").split(':');
                let host = parts.next().unwrap();
                let container = parts.next().expect("HOST:CONTAINER");
                host.starts_with('.')
                    .then(|| (container.to_owned(), self.dir.join(host)))
            })
            .collect()
    }

    fn published(&self, service: &str) -> Vec<Published> {
        let Some(ports) = self.service(service)["ports"].as_vec() else {
            return Vec::new();
        };
        ports
            .iter()
            .map(|port| {
                let text = str_at(port, "a port");
                let parts: Vec<&str> = text.split(':').collect();
                assert_eq!(parts.len(), 3, "HOST_IP:HOST_PORT:CONTAINER_PORT: {text}");
                Published {
                    host_ip: parts[0].to_owned(),
                    host_port: parts[1].parse().unwrap(),
                    container_port: parts[2].parse().unwrap(),
                }
            })
            .collect()
    }

    fn environment(&self, service: &str) -> BTreeMap<String, String> {
        self.service(service)["environment"]
            .as_hash()
            .map(|env| {
                env.iter()
                    .map(|(name, value)| {
                        (
                            str_at(name, "a variable").to_owned(),
                            str_at(value, "a value").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn strings(&self, service: &str, key: &str) -> Vec<String> {
        list_at(&self.service(service)[key], key)
            .iter()
            .map(|arg| str_at(arg, key).to_owned())
            .collect()
    }

    /// What every stack has in common: services on the bridge network that
    /// name existing services, the portcullis image built from this
    /// repository, published ports on the loopback only, and the dev IdP
    /// loaded as `portcullis dev-idp` loads it, listening where it is
    /// published and probed. Returns the IdP's settings.
    fn common_checks(&self) -> portcullis::dev_idp::Settings {
        let at = self.dir.display().to_string();
        let names = self.names();
        for name in &names {
            let service = self.service(name);
            assert!(
                service["network_mode"].is_badvalue(),
                "{at}: {name} is on the compose network, not the host's"
            );
            if let Some(depends) = service["depends_on"].as_hash() {
                for other in depends.keys() {
                    let other = str_at(other, "depends_on");
                    assert!(
                        names.iter().any(|n| n == other),
                        "{at}: {name} depends on {other}"
                    );
                }
            }
            for published in self.published(name) {
                assert_eq!(
                    published.host_ip, "127.0.0.1",
                    "{at}: {name} is published on the host's loopback only"
                );
            }
            if str_at(&service["image"], "image") == IMAGE {
                let context = self
                    .dir
                    .join(str_at(&service["build"]["context"], "build.context"));
                let dockerfile =
                    context.join(str_at(&service["build"]["dockerfile"], "build.dockerfile"));
                assert_eq!(
                    dockerfile.canonicalize().unwrap(),
                    repo().join("Dockerfile").canonicalize().unwrap(),
                    "{at}: {name} builds this repository's image"
                );
            }
            for (container, host) in self.mounts(name) {
                // ./secrets comes from gen-secrets.sh; everything else is in the repository.
                if host.file_name().is_some_and(|file| file == "secrets") {
                    assert!(
                        host.parent().unwrap().join("gen-secrets.sh").is_file(),
                        "{at}: {name}'s {container} is made by a gen-secrets.sh beside it"
                    );
                } else {
                    assert!(host.exists(), "{at}: {name} mounts {}", host.display());
                }
            }
        }

        // The IdP: portcullis dev-idp from the same image, reading the
        // mounted file, which the real loader accepts.
        assert_eq!(str_at(&self.service("idp")["image"], "idp image"), IMAGE);
        let command = self.strings("idp", "command");
        assert_eq!(command[..2], ["dev-idp", "--config"], "{command:?}");
        let idp_file = &self.mounts("idp")[&command[2]];
        let settings = portcullis::dev_idp::Settings::load(&portcullis::dev_idp::Options {
            config: Some(idp_file.clone()),
            ..Default::default()
        })
        .unwrap_or_else(|error| panic!("{}: {error:?}", idp_file.display()));
        // On the bridge network it listens on every interface of its
        // container, where its published port lands.
        assert!(
            settings.address.ip().is_unspecified(),
            "{}",
            settings.address
        );
        let port = settings.address.port();
        let published = self.published("idp");
        assert!(
            published
                .iter()
                .any(|p| p.container_port == port && p.host_port == port),
            "{at}: the IdP's {port} is published as {port}: {published:?}"
        );
        // It names itself after the browser's URL: the published port on localhost.
        let issuer = url::Url::parse(&settings.issuer()).unwrap();
        assert_eq!(issuer.host_str(), Some("localhost"), "{issuer}");
        assert_eq!(issuer.port(), Some(port), "{issuer}");
        let healthcheck = list_at(&self.service("idp")["healthcheck"]["test"], "healthcheck")
            .iter()
            .map(|arg| str_at(arg, "an argument"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            healthcheck.contains(&format!(
                "http://127.0.0.1:{port}/.well-known/openid-configuration"
            )),
            "{healthcheck}"
        );
        settings
    }
}

/// The stack's `authenticate_oidc` actions agree with the dev IdP: the
/// issuer it names itself, the browser's name for the login and sign-out
/// pages, the IdP's service name for what portcullis calls, its client.
fn oidc_agrees_with_the_idp(
    compose: &Compose,
    config: &Yaml,
    settings: &portcullis::dev_idp::Settings,
    env: &BTreeMap<String, String>,
    redirect_uri: &str,
) {
    let issuer = settings.issuer();
    let idp_origin = format!("http://idp:{}", settings.address.port());
    let mut actions = 0;
    for listener in list_at(&config["listeners"], "listeners") {
        for rule in list_at(&listener["rules"], "rules") {
            for action in list_at(&rule["actions"], "actions") {
                let oidc = &action["authenticate_oidc"];
                if oidc.is_badvalue() {
                    if let Some(target) = action["forward"]["target"].as_str() {
                        let target = url::Url::parse(target).unwrap();
                        let name = target.host_str().unwrap();
                        assert!(
                            compose.published(name).is_empty(),
                            "{name}, a forward target, is reachable through the front door only"
                        );
                        assert!(
                            str_at(&compose.service(name)["image"], "an app's image")
                                .starts_with("traefik/whoami:")
                                && target.port_or_known_default() == Some(80),
                            "whoami listens on 80: {target}"
                        );
                    }
                    continue;
                }
                actions += 1;
                assert_eq!(str_at(&oidc["issuer"], "issuer"), issuer);
                assert_eq!(oidc["discovery"].as_bool(), Some(false));
                assert_eq!(oidc["allow_insecure_http"].as_bool(), Some(true));
                for (key, path) in DEV_IDP_PATHS {
                    // The browser's pages on the issuer's name, the rest on the service's.
                    let origin = if matches!(key, "authorization_endpoint" | "end_session_endpoint")
                    {
                        issuer.as_str()
                    } else {
                        idp_origin.as_str()
                    };
                    assert_eq!(str_at(&oidc[key], key), format!("{origin}{path}"), "{key}");
                }
                let client = settings
                    .clients
                    .iter()
                    .find(|client| Some(client.id.as_str()) == oidc["client_id"].as_str())
                    .expect("the client is registered at the IdP");
                assert_eq!(
                    str_at(&oidc["client_secret"], "client_secret"),
                    "${CLIENT_SECRET}"
                );
                assert_eq!(client.secret.expose(), env["CLIENT_SECRET"]);
                assert!(
                    client
                        .redirect_uris
                        .iter()
                        .any(|uri| uri.as_str() == redirect_uri),
                    "{redirect_uri} is registered: {:?}",
                    client.redirect_uris
                );
            }
        }
    }
    assert!(actions >= 2, "a rule for everyone and one for admins");
}

/// `portcullis check` on a stack's configuration with what gen-secrets.sh makes.
fn compose_config_passes_check(config_text: &str, env: &BTreeMap<String, String>) {
    let root = tempfile::tempdir().unwrap();
    let secrets = root.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for name in ["session_secret", "signing.pem"] {
        std::fs::write(secrets.join(name), secret_file_content(name)).unwrap();
    }
    let (passed, stderr) = check(config_text, root.path(), env);
    assert!(passed, "the compose configuration passes check:\n{stderr}");
    assert!(
        stderr.contains("allow_insecure_http"),
        "check warns about plain http to the IdP:\n{stderr}"
    );
}

#[test]
fn the_compose_stack_agrees_with_the_image_and_its_idp() {
    let dockerfile = Dockerfile::parse();
    let compose = Compose::load(COMPOSE);
    let settings = compose.common_checks();

    // The config lands where the image's CMD reads it.
    let mounts = compose.mounts("portcullis");
    let config_text = std::fs::read_to_string(&mounts[dockerfile.config_path()]).unwrap();
    let config = YamlLoader::load_from_str(&config_text).unwrap().remove(0);
    assert!(mounts.contains_key(&format!("{CONFIG_DIR}/secrets")));

    // It listens on its container's interfaces, at ports the image
    // exposes, published as themselves.
    let listeners = list_at(&config["listeners"], "listeners");
    assert_eq!(listeners.len(), 1);
    let (address, https) = address_port(&listeners[0]["address"]);
    let (admin_address, admin) = address_port(&config["admin"]["address"]);
    let published = compose.published("portcullis");
    for (address, port) in [(address, https), (admin_address, admin)] {
        assert!(address.ip().is_unspecified(), "{address}");
        let port = u16::try_from(port).unwrap();
        assert!(dockerfile.expose.contains(&port));
        assert!(
            published
                .iter()
                .any(|p| p.container_port == port && p.host_port == port),
            "{port} is published: {published:?}"
        );
    }
    assert!(
        !listeners[0]["tls"].is_badvalue(),
        "the front door terminates TLS"
    );

    // Only the front door and the IdP's login page are published.
    for name in compose.names() {
        if !compose.published(&name).is_empty() {
            assert!(
                matches!(name.as_str(), "portcullis" | "idp"),
                "{name} is published"
            );
        }
    }

    let env = compose.environment("portcullis");
    let redirect_uri = format!("https://localhost:{https}/oauth2/idpresponse");
    oidc_agrees_with_the_idp(&compose, &config, &settings, &env, &redirect_uri);
    compose_config_passes_check(&config_text, &env);
}

#[test]
fn the_caddy_stack_runs_the_tested_caddyfile_in_front_of_portcullis() {
    let dockerfile = Dockerfile::parse();
    let compose = Compose::load(COMPOSE_CADDY);
    let settings = compose.common_checks();

    // Caddy runs the file the forward-auth tests run, where the image reads it.
    let caddy_mounts = compose.mounts("caddy");
    let caddyfile = &caddy_mounts["/etc/caddy/Caddyfile"];
    assert_eq!(
        caddyfile.canonicalize().unwrap(),
        repo()
            .join("deploy/forward-auth/Caddyfile")
            .canonicalize()
            .unwrap()
    );
    let caddyfile_text = std::fs::read_to_string(caddyfile).unwrap();
    let caddy_env = compose.environment("caddy");
    for name in ["LISTEN", "PORTCULLIS", "APP"] {
        assert!(
            caddyfile_text.contains(&format!("{{${name}:")),
            "the Caddyfile reads {name} from the environment"
        );
        assert!(
            caddy_env.contains_key(name),
            "compose sets {name} for Caddy"
        );
    }

    let mounts = compose.mounts("portcullis");
    let config_text = std::fs::read_to_string(&mounts[dockerfile.config_path()]).unwrap();
    let config = YamlLoader::load_from_str(&config_text).unwrap().remove(0);
    assert!(mounts.contains_key(&format!("{CONFIG_DIR}/secrets")));
    let listeners = list_at(&config["listeners"], "listeners");
    assert_eq!(listeners.len(), 1);
    let listener = &listeners[0];
    let (address, port) = address_port(&listener["address"]);
    assert!(address.ip().is_unspecified(), "{address}");
    assert!(
        listener["tls"].is_badvalue(),
        "plain HTTP: Caddy terminates TLS"
    );

    // Caddy asks portcullis at its listener, and forwards to the app.
    let (service, service_port) = caddy_env["PORTCULLIS"].split_once(':').unwrap();
    assert_eq!(service, "portcullis");
    assert_eq!(service_port, port.to_string());
    let (app, app_port) = caddy_env["APP"].split_once(':').unwrap();
    assert!(compose.names().iter().any(|name| name == app), "{app}");
    assert!(
        compose.published(app).is_empty(),
        "the app only behind Caddy"
    );
    assert!(
        str_at(&compose.service(app)["image"], "the app's image").starts_with("traefik/whoami:")
            && app_port == "80",
        "whoami listens on 80"
    );

    // Caddy's fixed address is in the network's subnet and is exactly
    // what portcullis trusts.
    let networks = compose.yaml["networks"]
        .as_hash()
        .expect("a network of its own");
    assert_eq!(networks.len(), 1);
    let (network, definition) = networks.iter().next().unwrap();
    let network = str_at(network, "the network's name");
    let subnet = str_at(
        &list_at(&definition["ipam"]["config"], "ipam.config")[0]["subnet"],
        "subnet",
    );
    let (base, bits) = subnet.split_once('/').unwrap();
    let base: std::net::Ipv4Addr = base.parse().unwrap();
    let bits: u32 = bits.parse().unwrap();
    let caddy_ip: std::net::Ipv4Addr = str_at(
        &compose.service("caddy")["networks"][network]["ipv4_address"],
        "Caddy's ipv4_address",
    )
    .parse()
    .unwrap();
    let mask = u32::MAX << (32 - bits);
    assert_eq!(
        u32::from(caddy_ip) & mask,
        u32::from(base) & mask,
        "{caddy_ip} in {subnet}"
    );
    let trusted: Vec<&str> = list_at(&listener["trusted_proxies"], "trusted_proxies")
        .iter()
        .map(|cidr| str_at(cidr, "a CIDR"))
        .collect();
    assert_eq!(trusted, [format!("{caddy_ip}/32")], "only Caddy is trusted");
    for name in compose.names() {
        let service = compose.service(&name);
        if let Some(list) = service["networks"].as_vec() {
            assert_eq!(list, &[Yaml::String(network.to_owned())], "{name}");
        } else {
            assert!(
                !service["networks"][network].is_badvalue(),
                "{name} on {network}"
            );
        }
    }

    // Caddy is the front door; portcullis publishes its admin port only.
    let listen = url::Url::parse(&caddy_env["LISTEN"]).unwrap();
    let front_port = listen.port_or_known_default().unwrap();
    assert!(
        compose
            .published("caddy")
            .iter()
            .any(|p| p.host_port == front_port && p.container_port == front_port),
        "Caddy's {front_port} is published"
    );
    let (admin_address, admin) = address_port(&config["admin"]["address"]);
    assert!(admin_address.ip().is_unspecified());
    let published: Vec<u16> = compose
        .published("portcullis")
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(
        published,
        [u16::try_from(admin).unwrap()],
        "not the listener"
    );
    for name in compose.names() {
        if !compose.published(&name).is_empty() {
            assert!(
                matches!(name.as_str(), "caddy" | "idp" | "portcullis"),
                "{name} is published"
            );
        }
    }

    let env = compose.environment("portcullis");
    let redirect_uri = format!(
        "{}://{}/oauth2/idpresponse",
        listen.scheme(),
        listen.authority()
    );
    oidc_agrees_with_the_idp(&compose, &config, &settings, &env, &redirect_uri);
    compose_config_passes_check(&config_text, &env);
}

#[test]
fn forward_auth_docs_show_the_tested_files_verbatim() {
    let docs = read("docs/forward-auth.md");
    for file in [
        "deploy/forward-auth/nginx.conf",
        "deploy/forward-auth/Caddyfile",
    ] {
        let text = read(file);
        assert!(
            docs.contains(&format!("\n{text}```\n")),
            "docs/forward-auth.md shows {file} whole, as it is: copy it in again"
        );
    }
}

#[test]
fn every_doc_names_the_same_image() {
    let mut files = vec![
        repo().join("Dockerfile"),
        repo().join("docs/deploying.md"),
        repo().join("docs/migrating-from-alb.md"),
        repo().join("docs/troubleshooting.md"),
    ];
    yaml_files(&repo().join("deploy"), &mut files);
    for readme in [
        "deploy/kubernetes/README.md",
        "deploy/kubernetes/three-replicas/README.md",
        "deploy/docker-compose/README.md",
        "deploy/docker-compose/caddy/README.md",
        "docs/forward-auth.md",
    ] {
        files.push(repo().join(readme));
    }
    let mut mentions = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        for (at, _) in text.match_indices("ghcr.io/portcullis/") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"`\"'),".contains(*c))
                .collect();
            assert_eq!(name, IMAGE, "{}", file.display());
            mentions += 1;
        }
    }
    assert!(
        mentions >= 4,
        "the image is named in the manifests and docs"
    );
}
