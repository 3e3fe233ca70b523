//! Rule templates the wizard offers, and the rules each one writes.
//!
//! A [`Template`] holds the operator's choices for one kind of protection;
//! [`Template::rules`] turns it into rule nodes for the file. Rule names are
//! fixed per template so two templates never collide; custom rules are
//! checked against [`RESERVED_NAMES`].

use super::render::Node;

/// The kinds offered in the multi-select, in display order.
pub const KINDS: &[&str] = &[
    "block endpoints (swarm, secrets, plugins, exec, build, ...)",
    "read-only resources (only GET/HEAD on chosen resources)",
    "body inspection (privileged, host mounts, capabilities, host namespaces, devices)",
    "role-based access (read-only roles, exec for admins only)",
    "IP filtering (only listed client addresses)",
    "redaction of secrets in responses",
    "rate limiting",
];

/// Names the templates use; custom rules may not take them.
pub const RESERVED_NAMES: &[&str] = &[
    "block-endpoints",
    "read-only-resources",
    "deny-privileged",
    "deny-host-mounts",
    "deny-capabilities",
    "deny-host-namespaces",
    "deny-devices",
    "read-only-roles",
    "exec-needs-admin",
    "allowed-client-ips",
    "redact-secrets",
    "redact-secrets-images",
    "redact-secrets-labels",
    "rate-limit",
];

/// Endpoint groups for "block endpoints": label and path regex.
pub const ENDPOINTS: &[(&str, &str)] = &[
    (
        "swarm and cluster (swarm, nodes, services, tasks)",
        "^/(swarm|nodes|services|tasks)(/|$)",
    ),
    ("secrets and configs", "^/(secrets|configs)(/|$)"),
    ("plugins", "^/plugins(/|$)"),
    (
        "exec (docker exec)",
        "^/(containers/[^/]+/exec|exec/[^/]+/(start|resize|json))$",
    ),
    ("image builds (docker build)", "^/(build|session)(/|$)"),
    ("image push", "^/images/.+/push$"),
    ("commit (docker commit)", "^/commit$"),
    (
        "prune (docker system prune)",
        "^/(containers|images|volumes|networks|build)/prune$",
    ),
];

/// Resources for "read-only resources": label and path regex.
pub const RESOURCES: &[(&str, &str)] = &[
    ("containers", "^/containers(/|$)"),
    ("images", "^/images(/|$)"),
    ("volumes", "^/volumes(/|$)"),
    ("networks", "^/networks(/|$)"),
    ("system (info, df, events)", "^/system(/|$)"),
];

/// Body checks for "body inspection".
pub const BODY_CHECKS: &[&str] = &[
    "privileged containers and exec sessions",
    "host path mounts (binds, bind mounts, VolumesFrom)",
    "dangerous capabilities and unconfined security options",
    "host namespaces (pid, ipc, uts, user, cgroup, network)",
    "host devices",
];

/// Response redactions: label, path regex, fields.
pub const REDACTIONS: &[(&str, &str, &[&str])] = &[
    (
        "container environment (inspect)",
        "^/containers/[^/]+/json$",
        &["Config.Env"],
    ),
    (
        "image environment (inspect)",
        "^/images/.+/json$",
        &["Config.Env", "ContainerConfig.Env"],
    ),
    (
        "container labels (inspect and list)",
        "^/containers/([^/]+/)?json$",
        &["Config.Labels", "Labels"],
    ),
];

/// What a rate limit applies to: label and path condition (none: all).
pub const RATE_SCOPES: &[(&str, Option<&str>)] = &[
    ("container create", Some("^/containers/create$")),
    (
        "exec (create and start)",
        Some("^/(containers/[^/]+/exec|exec/[^/]+/start)$"),
    ),
    ("every request", None),
];

/// One template with the operator's choices (indexes into the tables
/// above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    BlockEndpoints {
        endpoints: Vec<usize>,
        exempt_admin: bool,
    },
    ReadOnly {
        resources: Vec<usize>,
        exempt_admin: bool,
    },
    BodyInspection {
        checks: Vec<usize>,
    },
    RoleAccess {
        read_only_roles: Vec<String>,
        exec_admin_only: bool,
    },
    IpFilter {
        allowed: Vec<String>,
    },
    Redaction {
        redactions: Vec<usize>,
    },
    RateLimit {
        scope: usize,
        requests: u32,
        period: u64,
        penalty: u64,
    },
}

impl Template {
    /// The rules this template writes.
    pub fn rules(&self) -> Vec<Node> {
        match self {
            Template::BlockEndpoints {
                endpoints,
                exempt_admin,
            } => block_endpoints(endpoints, *exempt_admin),
            Template::ReadOnly {
                resources,
                exempt_admin,
            } => read_only(resources, *exempt_admin),
            Template::BodyInspection { checks } => {
                checks.iter().map(|&check| body_check(check)).collect()
            }
            Template::RoleAccess {
                read_only_roles,
                exec_admin_only,
            } => role_access(read_only_roles, *exec_admin_only),
            Template::IpFilter { allowed } => vec![ip_filter(allowed)],
            Template::Redaction { redactions } => redactions.iter().map(|&r| redact(r)).collect(),
            Template::RateLimit {
                scope,
                requests,
                period,
                penalty,
            } => {
                vec![rate_limit(*scope, *requests, *period, *penalty)]
            }
        }
    }
}

fn cond(field: &str, operator: &str, value: Node) -> Node {
    Node::map([
        ("field", Node::str(field)),
        ("operator", Node::str(operator)),
        ("value", value),
    ])
}

fn text(field: &str, operator: &str, value: &str) -> Node {
    cond(field, operator, Node::str(value))
}

fn any_of(items: Vec<Node>) -> Node {
    Node::map([("or", Node::List(items))])
}

fn all_of(items: Vec<Node>) -> Node {
    Node::map([("and", Node::List(items))])
}

fn strings(items: &[&str]) -> Node {
    Node::List(items.iter().map(|item| Node::str(*item)).collect())
}

fn deny(name: &str, description: &str, message: &str, conditions: Vec<Node>) -> Node {
    Node::map([
        ("name", Node::str(name)),
        ("description", Node::str(description)),
        ("priority", Node::Raw("100".into())),
        ("action", Node::str("deny")),
        ("message", Node::str(message)),
        ("conditions", Node::List(conditions)),
    ])
}

fn not_admin() -> Node {
    text("role", "not_equals", "admin")
}

fn block_endpoints(endpoints: &[usize], exempt_admin: bool) -> Vec<Node> {
    let paths = endpoints
        .iter()
        .map(|&i| text("path", "matches", ENDPOINTS[i].1))
        .collect();
    let mut conditions = vec![any_of(paths)];
    if exempt_admin {
        conditions.push(not_admin());
    }
    vec![deny(
        "block-endpoints",
        "endpoints chosen in the setup wizard",
        "this Docker API endpoint is blocked by the proxy policy",
        conditions,
    )]
}

fn read_only(resources: &[usize], exempt_admin: bool) -> Vec<Node> {
    let paths = resources
        .iter()
        .map(|&i| text("path", "matches", RESOURCES[i].1))
        .collect();
    let mut conditions = vec![
        cond("method", "not_in", strings(&["GET", "HEAD"])),
        any_of(paths),
    ];
    if exempt_admin {
        conditions.push(not_admin());
    }
    vec![deny(
        "read-only-resources",
        "resources that may be read but not changed",
        "this resource is read-only through the proxy",
        conditions,
    )]
}

fn role_access(read_only_roles: &[String], exec_admin_only: bool) -> Vec<Node> {
    let mut rules = Vec::new();
    if !read_only_roles.is_empty() {
        let roles = Node::List(
            read_only_roles
                .iter()
                .map(|r| Node::str(r.clone()))
                .collect(),
        );
        rules.push(deny(
            "read-only-roles",
            "roles that may only read",
            "this token is read-only: only GET and HEAD requests are allowed",
            vec![
                cond("role", "in", roles),
                cond("method", "not_in", strings(&["GET", "HEAD"])),
            ],
        ));
    }
    if exec_admin_only {
        rules.push(Node::map([
            ("name", Node::str("exec-needs-admin")),
            (
                "description",
                Node::str("exec into containers is for admins"),
            ),
            ("action", Node::str("require_role")),
            ("role", Node::str("admin")),
            ("message", Node::str("docker exec needs the admin role")),
            (
                "conditions",
                Node::List(vec![
                    text("method", "equals", "POST"),
                    text(
                        "path",
                        "matches",
                        "^/(containers/[^/]+/exec|exec/[^/]+/(start|resize))$",
                    ),
                ]),
            ),
        ]));
    }
    rules
}

fn ip_filter(allowed: &[String]) -> Node {
    let list = Node::List(allowed.iter().map(|a| Node::str(a.clone())).collect());
    deny(
        "allowed-client-ips",
        "only these client addresses may use the proxy",
        "your address may not use this proxy",
        vec![cond("client_ip", "not_in", list)],
    )
}

fn redact(index: usize) -> Node {
    let (label, path, fields) = REDACTIONS[index];
    let name = match index {
        0 => "redact-secrets",
        1 => "redact-secrets-images",
        _ => "redact-secrets-labels",
    };
    Node::map([
        ("name", Node::str(name)),
        ("description", Node::str(format!("redact {label}"))),
        ("action", Node::str("response_filter")),
        (
            "conditions",
            Node::List(vec![
                text("method", "equals", "GET"),
                text("path", "matches", path),
            ]),
        ),
        (
            "response_filter",
            Node::List(
                fields
                    .iter()
                    .map(|f| Node::map([("field", Node::str(*f)), ("action", Node::str("redact"))]))
                    .collect(),
            ),
        ),
    ])
}

fn rate_limit(scope: usize, requests: u32, period: u64, penalty: u64) -> Node {
    let (label, path) = RATE_SCOPES[scope];
    let conditions = match path {
        Some(path) => vec![
            text("method", "equals", "POST"),
            text("path", "matches", path),
        ],
        None => Vec::new(),
    };
    Node::map([
        ("name", Node::str("rate-limit")),
        (
            "description",
            Node::str(format!("rate limit on {label}, per client address")),
        ),
        ("priority", Node::Raw("50".into())),
        ("action", Node::str("rate_limit")),
        (
            "rate_limit",
            Node::map([
                ("requests", Node::Raw(requests.to_string())),
                ("period", Node::Raw(period.to_string())),
                ("penalty", Node::Raw(penalty.to_string())),
            ]),
        ),
        ("conditions", Node::List(conditions)),
    ])
}

// --- body inspection ----------------------------------------------------------

/// Capabilities that escape a container, in every spelling dockerd accepts
/// (see config.yaml and docs/policy.md for why `[Iı]`).
const DANGEROUS_CAPS: &str = "(?i)^\\s*(CAP_)?(ALL|SYS_ADM[Iı]N|SYS_MODULE|SYS_RAW[Iı]O|\
SYS_PTRACE|SYS_BOOT|SYS_T[Iı]ME|NET_ADM[Iı]N|DAC_READ_SEARCH|BPF|PERFMON|MAC_ADM[Iı]N|\
MAC_OVERR[Iı]DE|SYSLOG)\\s*$";
const HOST_MODE: &str = "(?i)^\\s*host\\s*$";
const BIND_OPTION: &str = "(?i)(^|,)\\s*r?bind\\s*(,|$)";

fn container_create() -> Vec<Node> {
    vec![
        text("method", "equals", "POST"),
        text("path", "equals", "/containers/create"),
    ]
}

fn body_check(index: usize) -> Node {
    match index {
        0 => deny(
            "deny-privileged",
            "privileged containers and exec sessions own the host",
            "privileged containers are not allowed through this proxy",
            vec![
                text("method", "equals", "POST"),
                any_of(vec![
                    all_of(vec![
                        text("path", "equals", "/containers/create"),
                        cond(
                            "body.HostConfig.Privileged",
                            "equals",
                            Node::Raw("true".into()),
                        ),
                    ]),
                    all_of(vec![
                        text("path", "matches", "^/containers/[^/]+/exec$"),
                        cond("body.Privileged", "equals", Node::Raw("true".into())),
                    ]),
                ]),
            ],
        ),
        1 => {
            let mut conditions = container_create();
            conditions.push(any_of(vec![
                text("body.HostConfig.Binds", "matches", "^/"),
                text("body.HostConfig.Mounts.Type", "matches", "(?i)^bind$"),
                Node::map([
                    (
                        "field",
                        Node::str(
                            "body.HostConfig.Mounts.VolumeOptions.DriverConfig.Options.device",
                        ),
                    ),
                    ("operator", Node::str("exists")),
                ]),
                text(
                    "body.HostConfig.Mounts.VolumeOptions.DriverConfig.Options.o",
                    "matches",
                    BIND_OPTION,
                ),
                text("body.HostConfig.VolumesFrom", "matches", "."),
            ]));
            deny(
                "deny-host-mounts",
                "host paths via Binds, bind Mounts, bind-backed volumes or VolumesFrom",
                "mounting host paths is not allowed through this proxy; use named volumes",
                conditions,
            )
        }
        2 => {
            let mut conditions = container_create();
            conditions.push(any_of(vec![
                text("body.HostConfig.CapAdd", "matches", DANGEROUS_CAPS),
                text("body.HostConfig.Capabilities", "matches", DANGEROUS_CAPS),
                text(
                    "body.HostConfig.SecurityOpt",
                    "matches",
                    "(?i)(unconfined|label[:=]disable)",
                ),
            ]));
            deny(
                "deny-capabilities",
                "capabilities that escape the container",
                "adding this capability is not allowed through this proxy",
                conditions,
            )
        }
        3 => {
            let mut conditions = container_create();
            let modes = [
                "PidMode",
                "IpcMode",
                "UTSMode",
                "UsernsMode",
                "CgroupnsMode",
                "NetworkMode",
            ];
            conditions.push(any_of(
                modes
                    .iter()
                    .map(|mode| text(&format!("body.HostConfig.{mode}"), "matches", HOST_MODE))
                    .collect(),
            ));
            deny(
                "deny-host-namespaces",
                "sharing a namespace of the host",
                "host namespaces are not allowed through this proxy",
                conditions,
            )
        }
        _ => {
            let mut conditions = container_create();
            conditions.push(any_of(vec![
                Node::map([
                    ("field", Node::str("body.HostConfig.Devices.PathOnHost")),
                    ("operator", Node::str("exists")),
                ]),
                text("body.HostConfig.DeviceCgroupRules", "matches", "."),
            ]));
            deny(
                "deny-devices",
                "host devices and device cgroup rules",
                "host devices are not allowed through this proxy",
                conditions,
            )
        }
    }
}
