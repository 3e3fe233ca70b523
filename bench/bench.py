#!/usr/bin/env python3
"""Load-test harness for docker-api-proxy (SPEC section 12, issue 8).

Run through `bench/run [--quick]`. Everything listens on 127.0.0.1 (TCP,
random free ports) or on unix sockets in a private temporary directory;
every process the harness starts is stopped by PID on exit; every step has
a timeout and the whole run has a deadline.
"""

import argparse
import atexit
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PROXY_BIN = os.environ.get("DAP_BENCH_PROXY_BIN") or os.path.join(REPO, "target", "release", "docker-api-proxy")
TOOLS_DIR = os.path.join(BENCH, "tools")
TOOLS_TARGET = os.path.join(BENCH, ".target")
TOOLS_BIN = os.path.join(TOOLS_TARGET, "release", "bench-tools")
REAL_SOCKET = "/var/run/docker.sock"
GIB = 1 << 30


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes

class Procs:
    """Every process we start, so that we can stop exactly those, by PID."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, **kw):
        log(f"start {name}: {' '.join(argv)}")
        p = subprocess.Popen(argv, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=12.0):
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} ignored signal {sig}, killing")
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
            except ProcessLookupError:
                pass
        self.procs = [(n, q) for (n, q) in self.procs if q is not p]

    def stop_all(self):
        for name, p in reversed(list(self.procs)):
            if p.poll() is None:
                log(f"stop {name} (pid {p.pid})")
            self.stop(p, grace=5.0)


PROCS = Procs()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def tcp_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def unix_get(path, target, timeout=3):
    """GET over a unix socket, returns (status, body)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def http_req(port, method, path, token=None, body=None, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if body is not None:
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ fixtures

def containers_json():
    """A realistic /containers/json answer (3 containers, ~2 KB), with a
    Config.Env list on each entry for the redaction scenario."""
    def one(i, name, image, cmd, env, labels):
        cid = secrets.token_hex(32)
        return {
            "Id": cid,
            "Names": [f"/{name}"],
            "Image": image,
            "ImageID": "sha256:" + secrets.token_hex(32),
            "Command": cmd,
            "Created": 1764770000 + i,
            "Ports": [{"PrivatePort": 8080, "Type": "tcp"}],
            "Labels": labels,
            "State": "running",
            "Status": f"Up {i + 2} minutes",
            "HostConfig": {"NetworkMode": "bridge"},
            "NetworkSettings": {"Networks": {"bridge": {
                "NetworkID": secrets.token_hex(8), "Gateway": "172.17.0.1",
                "IPAddress": f"172.17.0.{i + 2}", "IPPrefixLen": 16,
                "MacAddress": f"02:42:ac:11:00:0{i + 2}"}}},
            "Mounts": [],
            "Config": {"Env": env},
        }
    data = [
        one(0, "ci-job-4711-build", "registry.ci.internal/build/node:20", "npm ci",
            ["PATH=/usr/local/bin:/usr/bin", "NODE_ENV=production", "NPM_TOKEN=npm_8f2c0d1e5b7a4c3f9e"],
            {"ci.job": "4711", "ci.pipeline": "frontend"}),
        one(1, "ci-job-4712-test", "registry.ci.internal/build/python:3.12", "pytest -x",
            ["PATH=/usr/local/bin:/usr/bin", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "PYTHONUNBUFFERED=1"],
            {"ci.job": "4712", "ci.pipeline": "backend"}),
        one(2, "ci-cache", "registry.ci.internal/infra/cache:1.4", "/bin/cache-server --port 8080",
            ["PATH=/usr/local/bin:/usr/bin", "CACHE_PASSWORD=hunter2-but-longer"],
            {"ci.role": "cache"}),
    ]
    return json.dumps(data, separators=(",", ":"))


def create_body(target_len=4096):
    """A realistic 4 KiB POST /containers/create body that no deny rule matches."""
    body = {
        "Hostname": "", "Domainname": "", "User": "1000:1000",
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
        "Tty": False, "OpenStdin": False, "StdinOnce": False,
        "Env": [], "Cmd": ["sh", "-c", "make test"],
        "Image": "registry.ci.internal/build/node:20",
        "WorkingDir": "/workspace", "Entrypoint": None,
        "Labels": {"ci.job": "4711", "ci.pipeline": "frontend", "ci.runner": "runner-07"},
        "HostConfig": {
            "Binds": ["/srv/ci/cache/npm:/root/.npm:rw", "/srv/ci/jobs/4711:/workspace:rw"],
            "NetworkMode": "bridge", "Privileged": False, "PidMode": "",
            "CapAdd": ["NET_BIND_SERVICE"], "CapDrop": ["ALL"],
            "Memory": 4294967296, "NanoCpus": 2000000000, "AutoRemove": True,
            "SecurityOpt": ["no-new-privileges"], "Devices": [],
        },
        "NetworkingConfig": {"EndpointsConfig": {}},
    }
    i = 0
    while len(json.dumps(body)) < target_len - 80:
        body["Env"].append(f"CI_VAR_{i:03d}=value-{secrets.token_hex(8)}")
        i += 1
    body["Labels"]["ci.note"] = ""
    body["Labels"]["ci.note"] = "n" * (target_len - len(json.dumps(body)))
    s = json.dumps(body)
    assert len(s) == target_len, len(s)
    return s


def policy_yaml(token, body_rules=True, redact=False):
    """The 20-rule policy (SPEC section 4). With body_rules=False the five
    create-body rules are replaced by five rules on the same requests that
    do not need the body, so the rule count stays 20."""
    if body_rules:
        first5 = """
  - name: deny-privileged
    action: deny
    message: privileged containers are not allowed on CI runners
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: body.HostConfig.Privileged, operator: equals, value: true}
  - name: deny-host-network
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: body.HostConfig.NetworkMode, operator: equals, value: host}
  - name: deny-docker-socket-bind
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: body.HostConfig.Binds, operator: matches, value: 'docker\\.sock'}
  - name: deny-cap-sys-admin
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: body.HostConfig.CapAdd, operator: in, value: [SYS_ADMIN, CAP_SYS_ADMIN, ALL]}
  - name: deny-foreign-images
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: body.Image, operator: not_matches, value: '^(registry\\.ci\\.internal/|local/|busybox)'}
"""
    else:
        first5 = """
  - name: deny-create-reserved-name
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: query.name, operator: matches, value: '^(reserved|system)-'}
  - name: deny-create-marked
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: header.X-Bench-Deny, operator: exists}
  - name: deny-create-evil-agent
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: header.User-Agent, operator: matches, value: '(?i)evil'}
  - name: deny-create-windows
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: query.platform, operator: starts_with, value: windows}
  - name: deny-create-readonly
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: equals, value: /containers/create}
      - {field: role, operator: equals, value: readonly}
"""
    rest = """
  - name: deny-foreign-networks
    action: deny
    conditions:
      - {field: client_ip, operator: in, value: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, "fd00::/8"]}
  - name: deny-swarm
    action: deny
    conditions:
      - {field: path, operator: matches, value: '^/(swarm|nodes|services|tasks|secrets|configs)(/|$)'}
  - name: deny-plugins
    action: deny
    conditions:
      - {field: path, operator: starts_with, value: /plugins}
  - name: deny-prune
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: matches, value: '^/(containers|images|volumes|networks|build)/prune$'}
  - name: deny-volume-delete
    action: deny
    conditions:
      - {field: method, operator: equals, value: DELETE}
      - {field: path, operator: starts_with, value: /volumes/}
  - name: deny-image-push
    action: deny
    conditions:
      - {field: path, operator: matches, value: '^/images/.+/push$'}
  - name: deny-scanners
    action: deny
    conditions:
      - {field: header.User-Agent, operator: matches, value: '(?i)(sqlmap|nikto|masscan|zgrab)'}
  - name: deny-old-api
    action: deny
    conditions:
      - {field: api_version, operator: matches, value: '^1\\.(1[0-9]|2[0-3])$'}
  - name: builders-only-build
    action: require_role
    role: builder
    conditions:
      - {field: path, operator: matches, value: '^/(build|session|grpc)$'}
  - name: deny-secret-filters
    action: deny
    conditions:
      - {field: query.filters, operator: contains, value: secret}
  - name: deny-foreign-host-header
    action: deny
    conditions:
      - {field: header.Host, operator: not_matches, value: '^(127\\.0\\.0\\.1|localhost|docker)(:[0-9]+)?$'}
  - name: deny-distribution
    action: deny
    conditions:
      - {field: path, operator: starts_with, value: /distribution}
  - name: deny-root-exec
    action: deny
    conditions:
      - {field: method, operator: equals, value: POST}
      - {field: path, operator: matches, value: '^/containers/[^/]+/exec$'}
      - or:
          - {field: query.privileged, operator: equals, value: "1"}
          - {field: query.user, operator: equals, value: root}
  - name: deny-delete-non-admin
    action: deny
    conditions:
      - {field: method, operator: equals, value: DELETE}
      - {field: role, operator: not_equals, value: admin}
  - name: allow-local-reads
    action: allow
    conditions:
      - {field: method, operator: in, value: [GET, HEAD]}
      - {field: path, operator: matches, value: '^/(_ping|version|info|events|containers|images|networks|volumes|system)(/.*)?$'}
      - {field: client_ip, operator: in, value: [127.0.0.0/8, "::1/128"]}
"""
    tail = ""
    if redact:
        tail = """
  - name: redact-env
    action: response_filter
    conditions:
      - {field: path, operator: matches, value: '^/containers/(json|[^/]+/json)$'}
    response_filter:
      - {field: Config.Env, action: redact}
      - {field: Labels, action: redact}
"""
    return f"""# generated by bench/bench.py: 20-rule policy{' + redaction filter' if redact else ''}{'' if body_rules else ' (no body rules)'}
global:
  bind: 127.0.0.1
  workers: 2
  default_action: allow
auth:
  tokens:
    - {{token: "{token}", role: admin, name: bench}}
rules:{first5}{rest}{tail}"""


def haproxy_cfg(port, backend_socket, token, run):
    """HAProxy with 2 threads and the same allow/deny decisions as policy_yaml()."""
    def deny(cond, msg):
        return (f"    http-request deny deny_status 403 content-type application/json "
                f"string '{{\"message\":\"{msg}\"}}' if {cond}\n")
    create = "METH_POST { var(txn.p) -m str /containers/create }"
    rules = ""
    # the five body rules (HAProxy has no JSON: regexes over the buffered body;
    # single quotes keep the regex literal in HAProxy's config syntax)
    rules += deny(create + """ { req.body -m reg -i '"Privileged"\\s*:\\s*true' }""", "deny-privileged")
    rules += deny(create + """ { req.body -m reg -i '"NetworkMode"\\s*:\\s*"host"' }""", "deny-host-network")
    rules += deny(create + """ { req.body -m reg -i 'docker\\.sock' }""", "deny-docker-socket-bind")
    rules += deny(create + """ { req.body -m reg -i '"CapAdd"\\s*:\\s*\\[[^]]*"(CAP_)?(SYS_ADMIN|ALL)"' }""", "deny-cap-sys-admin")
    rules += deny(create + """ !{ req.body -m reg -i '"Image"\\s*:\\s*"(registry\\.ci\\.internal/|local/|busybox)' }""", "deny-foreign-images")
    rules += deny("{ src 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 fd00::/8 }", "deny-foreign-networks")
    rules += deny("{ var(txn.p) -m reg ^/(swarm|nodes|services|tasks|secrets|configs)(/|$) }", "deny-swarm")
    rules += deny("{ var(txn.p) -m beg /plugins }", "deny-plugins")
    rules += deny("METH_POST { var(txn.p) -m reg ^/(containers|images|volumes|networks|build)/prune$ }", "deny-prune")
    rules += deny("{ method DELETE } { var(txn.p) -m beg /volumes/ }", "deny-volume-delete")
    rules += deny("{ var(txn.p) -m reg ^/images/.+/push$ }", "deny-image-push")
    rules += deny("{ req.hdr(user-agent) -m reg -i (sqlmap|nikto|masscan|zgrab) }", "deny-scanners")
    rules += deny("{ path -m reg ^/v1\\.(1[0-9]|2[0-3])/ }", "deny-old-api")
    rules += deny("{ var(txn.p) -m reg ^/(build|session|grpc)$ } !auth_ok", "builders-only-build")
    rules += deny("{ url_param(filters),url_dec -m sub secret }", "deny-secret-filters")
    rules += deny("!{ req.hdr(host) -m reg ^(127\\.0\\.0\\.1|localhost|docker)(:[0-9]+)?$ }", "deny-foreign-host-header")
    rules += deny("{ var(txn.p) -m beg /distribution }", "deny-distribution")
    rules += deny("METH_POST { var(txn.p) -m reg ^/containers/[^/]+/exec$ } { url_param(privileged) -m str 1 } || "
                  "METH_POST { var(txn.p) -m reg ^/containers/[^/]+/exec$ } { url_param(user) -m str root }", "deny-root-exec")
    rules += deny("{ method DELETE } !auth_ok", "deny-delete-non-admin")
    rules += ("    http-request allow if { method GET HEAD } "
              "{ var(txn.p) -m reg ^/(_ping|version|info|events|containers|images|networks|volumes|system)(/.*)?$ } "
              "{ src 127.0.0.0/8 ::1 }\n")
    return f"""# generated by bench/bench.py: HAProxy baseline, 2 threads, policy equivalent to the 20-rule YAML
global
    nbthread 2
    maxconn 11000
    # the hard open-file limit may be 20,000 here: let HAProxy start anyway
    no strict-limits
    pidfile {run}/haproxy-{port}.pid

defaults
    mode http
    timeout connect 5s
    timeout client 130s
    timeout server 3600s
    timeout tunnel 3600s
    timeout http-request 30s
    timeout http-keep-alive 120s
    option http-keep-alive
    http-reuse always

frontend api
    bind 127.0.0.1:{port}
    maxconn 11000
    option http-buffer-request
    acl auth_ok req.hdr(authorization) -m str "Bearer {token}"
    http-request deny deny_status 401 content-type application/json string '{{"message":"unauthorized"}}' if !auth_ok
    http-request del-header authorization
    http-request set-var(txn.p) path,url_dec,regsub(^/v[0-9][0-9.]*/,/)
{rules}    default_backend engine

backend engine
    server engine unix@{backend_socket} maxconn 20000
"""


def nginx_conf(run, sock, port):
    return f"""# generated by bench/bench.py: fast engine stand-in
worker_processes 1;
daemon off;
master_process on;
user root root;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
worker_rlimit_nofile 200000;
events {{ worker_connections 50000; multi_accept on; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    client_body_temp_path {run}/nginx-body;
    server {{
        listen unix:{sock} backlog=8192;
        listen 127.0.0.1:{port} backlog=8192;
        default_type application/json;
        add_header Api-Version 1.41 always;
        add_header Ostype linux always;
        location = /v1.41/containers/json {{ alias {run}/www/containers.json; }}
        location = /containers/json {{ alias {run}/www/containers.json; }}
        location ~ ^(/v[0-9.]+)?/_ping$ {{ default_type text/plain; return 200 "OK"; }}
        location ~ ^(/v[0-9.]+)?/containers/create$ {{
            client_max_body_size 2m;
            client_body_buffer_size 64k;
            return 201 '{{"Id":"4c9f1f5e0c4ad0f7b3c2a1e9d8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9","Warnings":[]}}';
        }}
        location / {{ return 404 '{{"message":"page not found"}}'; }}
    }}
}}
"""


# ------------------------------------------------------------------ wrk

def parse_dur_us(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[u]


def cpu_seconds(pid):
    """User plus system CPU time of a process, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url, conns, secs, token=None, script=None, warm=0.0, cpu_pid=None):
    base = ["wrk", "-t1", f"-c{conns}", "--latency", "--timeout", "5s"]
    if token:
        base += ["-H", f"Authorization: Bearer {token}"]
    if script:
        base += ["-s", script]
    if warm > 0:
        subprocess.run(base + [f"-d{warm}s", url], capture_output=True, timeout=warm + 30)
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else None
    out = subprocess.run(base + [f"-d{secs}s", url], capture_output=True, text=True, timeout=secs + 60).stdout
    cpu = cpu_seconds(cpu_pid) - cpu_before if cpu_pid else None
    r = {"rps": 0.0, "p50": None, "p99": None, "non2xx": 0, "errors": 0, "requests": 0, "raw": out,
         "cpu_us_per_req": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            r[key] = parse_dur_us(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    if cpu is not None and r["requests"]:
        r["cpu_us_per_req"] = cpu * 1e6 / r["requests"]
    return r


def run_wrk_rounds(specs, rounds, secs, warm):
    """Runs every wrk spec `rounds` times, interleaved (A B C, C B A, A B C, ...), so a slow
    moment of the shared machine falls on every target alike rather than on one of them.
    `specs` maps a name to run_wrk's keyword arguments (url, conns and the optional ones).
    Per name: req/s, p50 and p99 are medians over the rounds; requests, non-2xx and errors are
    summed; CPU per request is total CPU over total requests. The warm-up runs only before
    each target's first round."""
    per = {name: [] for name in specs}
    cpu = {name: 0.0 for name in specs}
    for r in range(rounds):
        order = list(specs) if r % 2 == 0 else list(reversed(specs))
        for name in order:
            res = run_wrk(secs=secs, warm=warm if r == 0 else 0.0, **specs[name])
            per[name].append(res)
            if res["cpu_us_per_req"] is not None:
                cpu[name] += res["cpu_us_per_req"] * res["requests"]
    out = {}
    for name, runs in per.items():
        med = lambda k: (statistics.median(v for v in (x[k] for x in runs) if v is not None)
                         if any(x[k] is not None for x in runs) else None)
        total = sum(x["requests"] for x in runs)
        out[name] = {"rps": med("rps"), "p50": med("p50"), "p99": med("p99"),
                     "non2xx": sum(x["non2xx"] for x in runs), "errors": sum(x["errors"] for x in runs),
                     "requests": total, "rounds": [x["rps"] for x in runs],
                     "cpu_us_per_req": cpu[name] / total if specs[name].get("cpu_pid") and total else None}
    return out


def run_tool(args, timeout):
    p = subprocess.run([TOOLS_BIN] + args, capture_output=True, text=True, timeout=timeout)
    line = (p.stdout.strip().splitlines() or [""])[-1]
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    if p.returncode != 0:
        log(f"bench-tools {args[0]} failed: {p.stderr.strip()[-500:]}")
    return kv


# ------------------------------------------------------------------ the run

class Bench:
    def __init__(self, quick, out_path, skip_real, proxy_env=()):
        self.proxy_env = dict(kv.split("=", 1) for kv in proxy_env)
        self.quick = quick
        self.skip_real = skip_real
        self.out_path = out_path
        # wrk: seconds per round, warm-up before a target's first round, interleaved rounds.
        self.secs = 3
        self.warm = 0.5 if quick else 2
        self.rounds = 1 if quick else 5
        self.bulk = (1 if quick else 4) * GIB
        self.token = "bench-" + secrets.token_hex(16)
        self.run = tempfile.mkdtemp(prefix="dap-bench-")
        self.rows = []
        self.notes = []
        self.features = {}
        log(f"run directory {self.run}")

    # --- setup
    def prepare(self):
        r = self.run
        os.makedirs(f"{r}/www")
        os.makedirs(f"{r}/nginx-body")
        with open(f"{r}/www/containers.json", "w") as f:
            f.write(containers_json())
        self.create_body = create_body()
        with open(f"{r}/create.json", "w") as f:
            f.write(self.create_body)
        with open(f"{r}/post.lua", "w") as f:
            f.write(f"""wrk.method = "POST"
local f = io.open("{r}/create.json", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
""")
        for name, kw in (("base", {}), ("redact", {"redact": True}), ("nobody", {"body_rules": False})):
            with open(f"{r}/policy-{name}.yaml", "w") as f:
                f.write(policy_yaml(self.token, **kw))
        self.engine_sock = f"{r}/engine.sock"
        self.stream_sock = f"{r}/stream-engine.sock"
        self.direct_port = free_port()
        with open(f"{r}/nginx.conf", "w") as f:
            f.write(nginx_conf(r, self.engine_sock, self.direct_port))

    def start_engines(self):
        r = self.run
        self.nginx = PROCS.start("nginx", ["nginx", "-p", r, "-e", f"{r}/nginx-error.log", "-c", f"{r}/nginx.conf"],
                                 stdout=subprocess.DEVNULL, stderr=open(f"{r}/nginx.out", "w"))
        wait_until(lambda: os.path.exists(self.engine_sock) and unix_get(self.engine_sock, "/v1.41/_ping")[0] == 200,
                   10, "nginx engine stand-in")
        self.stream_tcp_port = free_port()
        self.stream_engine = PROCS.start("stream-engine", [TOOLS_BIN, "engine", "--socket", self.stream_sock,
                                                           "--tcp", f"127.0.0.1:{self.stream_tcp_port}"],
                                         stdout=subprocess.DEVNULL, stderr=open(f"{r}/stream-engine.log", "w"))
        wait_until(lambda: os.path.exists(self.stream_sock) and unix_get(self.stream_sock, "/v1.41/_ping")[0] == 200,
                   10, "stream engine")

    def start_proxy(self, name, policy, socket_path, extra_env=None):
        port = free_port()
        env = dict(os.environ)
        env.pop("DOCKER_PROXY_CONFIG", None)
        env.pop("DOCKER_PROXY_SECRET", None)
        env.update(self.proxy_env)
        env.update(extra_env or {})
        env.update({"DOCKER_PROXY_PORT": str(port), "DOCKER_SOCKET": socket_path})
        cfg = f"{self.run}/policy-{policy}.yaml"
        p = PROCS.start(f"proxy-{name}", [PROXY_BIN, "--config", cfg], env=env, cwd=self.run,
                        stdout=subprocess.DEVNULL, stderr=open(f"{self.run}/proxy-{name}.log", "w"))

        def ready():
            if p.poll() is not None:
                raise RuntimeError(f"proxy {name} exited with {p.returncode}; see {self.run}/proxy-{name}.log")
            return tcp_open(port) and http_req(port, "GET", "/v1.41/_ping", self.token)[0] == 200
        wait_until(ready, 15, f"proxy {name}")
        return p, port

    def start_haproxy(self, name, socket_path):
        port = free_port()
        cfg = f"{self.run}/haproxy-{name}.cfg"
        with open(cfg, "w") as f:
            f.write(haproxy_cfg(port, socket_path, self.token, self.run))
        p = PROCS.start(f"haproxy-{name}", ["haproxy", "-db", "-f", cfg],
                        stdout=subprocess.DEVNULL, stderr=open(f"{self.run}/haproxy-{name}.log", "w"))
        wait_until(lambda: p.poll() is None and tcp_open(port)
                   and http_req(port, "GET", "/v1.41/_ping", self.token)[0] == 200, 10, f"haproxy {name}")
        return p, port

    # --- checks: which policy features are really active in this binary
    def probe_features(self, port, hport):
        f = {}
        st, _ = http_req(port, "GET", "/v1.41/containers/json")
        f["bearer auth (401 without token)"] = st == 401
        st, _ = http_req(port, "GET", "/v1.41/swarm", self.token)
        f["path deny rule (403 on /swarm)"] = st == 403
        bad = json.loads(self.create_body)
        bad["HostConfig"]["Privileged"] = True
        st, _ = http_req(port, "POST", "/v1.41/containers/create", self.token, body=json.dumps(bad))
        f["body rule (403 on Privileged=true)"] = st == 403
        st, _ = http_req(port, "POST", "/v1.41/containers/create", self.token, body=self.create_body)
        f["allowed create forwarded (201)"] = st == 201
        # the HAProxy baseline must make the same decisions
        hs = [http_req(hport, "GET", "/v1.41/containers/json")[0],
              http_req(hport, "GET", "/v1.41/swarm", self.token)[0],
              http_req(hport, "POST", "/v1.41/containers/create", self.token, body=json.dumps(bad))[0],
              http_req(hport, "POST", "/v1.41/containers/create", self.token, body=self.create_body)[0]]
        f["HAProxy baseline decisions 401/403/403/201"] = hs == [401, 403, 403, 201]
        self.features.update(f)
        for k, v in f.items():
            log(f"feature {k}: {'yes' if v else 'NO'}")

    # --- table
    def row(self, scenario, figure, ours, base=None, ceiling=None, ratio=None, target="", ok=None, note=""):
        res = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append([scenario, figure, ours, base or "", ceiling or "", ratio or "", target, res, note])
        log(f"{scenario} | {figure} | ours {ours} | base {base or '-'} | ceiling {ceiling or '-'} | {ratio or ''} {target} {res} {note}")

    @staticmethod
    def fmt_rps(v):
        return f"{v / 1000:.1f}k"

    @staticmethod
    def fmt_lat(us):
        if us is None:
            return "?"
        return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"

    @staticmethod
    def bad_note(r):
        bad = r["non2xx"] + r["errors"]
        return "" if bad == 0 else f"{r['non2xx']} non-2xx, {r['errors']} socket errors"

    # --- scenarios
    def wrk_rounds(self, specs):
        return run_wrk_rounds(specs, self.rounds, self.secs, self.warm)

    def scen_get(self, ports, pids):
        concs = [10, 50, 200]
        url = "http://127.0.0.1:{}/v1.41/containers/json"
        self.get_results = {}
        for c in concs:
            res = self.wrk_rounds({
                "direct": {"url": url.format(self.direct_port), "conns": c},
                "haproxy": {"url": url.format(ports["haproxy"]), "conns": c, "token": self.token,
                            "cpu_pid": pids["haproxy"]},
                "ours": {"url": url.format(ports["ours"]), "conns": c, "token": self.token,
                         "cpu_pid": pids["ours"]},
            })
            d, h, o = res["direct"], res["haproxy"], res["ours"]
            self.get_results[c] = o
            ratio = o["rps"] / h["rps"] if h["rps"] else 0
            notes = [x for x in (self.bad_note(o) and "ours: " + self.bad_note(o),
                                 self.bad_note(h) and "haproxy: " + self.bad_note(h)) if x]
            if self.rounds > 1:
                notes.append("rounds ours " + "/".join(self.fmt_rps(x) for x in o["rounds"])
                             + ", HAProxy " + "/".join(self.fmt_rps(x) for x in h["rounds"]))
            self.row(f"GET containers/json, 20 rules, c={c}", "req/s", self.fmt_rps(o["rps"]),
                     f"HAProxy {self.fmt_rps(h['rps'])}", self.fmt_rps(d["rps"]), f"{ratio:.2f}x", ">= 1.25x HAProxy",
                     ratio >= 1.25 and not self.bad_note(o), "; ".join(notes))
            self.row(f"GET containers/json, 20 rules, c={c}", "p50", self.fmt_lat(o["p50"]),
                     f"HAProxy {self.fmt_lat(h['p50'])}", self.fmt_lat(d["p50"]),
                     f"{o['p50'] / h['p50']:.2f}x" if o["p50"] and h["p50"] else "", "(info)")
            okp99 = o["p99"] is not None and h["p99"] is not None and o["p99"] <= h["p99"]
            self.row(f"GET containers/json, 20 rules, c={c}", "p99", self.fmt_lat(o["p99"]),
                     f"HAProxy {self.fmt_lat(h['p99'])}", self.fmt_lat(d["p99"]),
                     f"{o['p99'] / h['p99']:.2f}x" if o["p99"] and h["p99"] else "", "<= 1.0x HAProxy", okp99)
            # CPU time each proxy spent per request (all threads, user + system), from /proc:
            # the cost of a request, independent of how the shared CPUs were scheduled. Its
            # inverse is the request rate one proxy CPU-second buys: the throughput each proxy
            # would reach on cores of its own, without the load generator and the engine.
            oc, hc = o["cpu_us_per_req"], h["cpu_us_per_req"]
            self.row(f"GET containers/json, 20 rules, c={c}", "proxy CPU per request",
                     f"{oc:.1f} µs" if oc else "?", f"HAProxy {hc:.1f} µs" if hc else "HAProxy ?", "",
                     f"{oc / hc:.2f}x" if oc and hc else "", "(info)")
            self.row(f"GET containers/json, 20 rules, c={c}", "req per proxy CPU-second",
                     self.fmt_rps(1e6 / oc) if oc else "?", f"HAProxy {self.fmt_rps(1e6 / hc)}" if hc else "HAProxy ?",
                     "", f"{hc / oc:.2f}x" if oc and hc else "", "(info)")

    def scen_redact(self, ports):
        port = ports["ours-redact"]
        st, body = http_req(port, "GET", "/v1.41/containers/json", self.token)
        active = b"***REDACTED***" in body and b"AWS_SECRET" not in body
        self.features["redaction filter applied (Config.Env redacted)"] = active
        concs = [50] if self.quick else [10, 50, 200]
        url = "http://127.0.0.1:{}/v1.41/containers/json"
        for c in concs:
            # The unfiltered figure is measured again here, interleaved with the filtered one.
            res = self.wrk_rounds({
                "unfiltered": {"url": url.format(ports["ours"]), "conns": c, "token": self.token},
                "redact": {"url": url.format(port), "conns": c, "token": self.token},
            })
            o, u = res["redact"], res["unfiltered"]
            ratio = o["rps"] / u["rps"] if u["rps"] else 0
            note = self.bad_note(o)
            if not active:
                note = (note + "; " if note else "") + "filter NOT applied by this build"
            self.row(f"GET containers/json + redaction, c={c}", "req/s", self.fmt_rps(o["rps"]),
                     f"unfiltered {self.fmt_rps(u['rps'])}", "", f"{ratio:.2f}x", ">= 0.8x unfiltered",
                     ratio >= 0.8 and active and not self.bad_note(o), note)
            self.row(f"GET containers/json + redaction, c={c}", "p99", self.fmt_lat(o["p99"]),
                     f"unfiltered {self.fmt_lat(u['p99'])}", "", "", "(info)")

    def scen_post(self, ports):
        c = 50
        script = f"{self.run}/post.lua"
        url = "http://127.0.0.1:{}/v1.41/containers/create"
        tok = self.token
        res = self.wrk_rounds({
            "inspected": {"url": url.format(ports["ours"]), "conns": c, "token": tok, "script": script},
            "uninspected": {"url": url.format(ports["ours-nobody"]), "conns": c, "token": tok, "script": script},
            "haproxy": {"url": url.format(ports["haproxy"]), "conns": c, "token": tok, "script": script},
            "direct": {"url": url.format(self.direct_port), "conns": c, "script": script},
        })
        i, u, h, d = res["inspected"], res["uninspected"], res["haproxy"], res["direct"]
        ratio = i["rps"] / u["rps"] if u["rps"] else 0
        note = "; ".join(x for x in (self.bad_note(i) and "inspected: " + self.bad_note(i),
                                      self.bad_note(u) and "uninspected: " + self.bad_note(u)) if x)
        if not self.features.get("body rule (403 on Privileged=true)"):
            note = (note + "; " if note else "") + "body rules NOT enforced by this build"
        self.row(f"POST containers/create 4 KiB, 5 body rules, c={c}", "req/s", self.fmt_rps(i["rps"]),
                 f"no body rules {self.fmt_rps(u['rps'])}; HAProxy (body regexes) {self.fmt_rps(h['rps'])}",
                 self.fmt_rps(d["rps"]), f"{ratio:.2f}x", ">= 0.7x uninspected",
                 ratio >= 0.7 and not self.bad_note(i) and self.features.get("body rule (403 on Privileged=true)", False), note)
        self.row(f"POST containers/create 4 KiB, 5 body rules, c={c}", "p99", self.fmt_lat(i["p99"]),
                 f"no body rules {self.fmt_lat(u['p99'])}; HAProxy {self.fmt_lat(h['p99'])}", self.fmt_lat(d["p99"]),
                 "", "(info)")

    def scen_bulk(self, ports):
        # "ours" runs with the default bulk copy (splice between plain sockets); "buffered" is a
        # second instance with DOCKER_PROXY_BULK_COPY=buffered, measured in the same run.
        n = self.bulk
        tgt = {"ours": f"tcp:127.0.0.1:{ports['ours']}", "buffered": f"tcp:127.0.0.1:{ports['ours-buffered']}",
               "haproxy": f"tcp:127.0.0.1:{ports['haproxy']}",
               "direct-tcp": f"tcp:127.0.0.1:{self.stream_tcp_port}", "direct-unix": f"unix:{self.stream_sock}"}
        for label, kind, extra in (("upgraded stream engine->client", "stream", ["--mode", "source"]),
                                   ("upgraded stream client->engine", "stream", ["--mode", "sink"]),
                                   ("upload POST images/load", "upload", [])):
            res = {}
            for who, t in tgt.items():
                tok = [] if who.startswith("direct") else ["--token", self.token]
                res[who] = run_tool([kind, "--target", t, "--bytes", str(n)] + extra + tok, timeout=120)
            g = lambda w: float(res[w].get("gibps", 0)) if res[w].get("ok") == "1" else 0.0
            note = "; ".join(f"{w} failed: {res[w]}" for w in ("ours", "buffered") if res[w].get("ok") != "1")
            self.row(f"{label}, {n // GIB} GiB", "GiB/s", f"{g('ours'):.2f}",
                     f"buffered copy {g('buffered'):.2f}; HAProxy {g('haproxy'):.2f}",
                     f"TCP {g('direct-tcp'):.2f}, unix {g('direct-unix'):.2f}",
                     f"{g('ours') / g('haproxy'):.2f}x HAProxy" if g("haproxy") else "",
                     ">= 2 GiB/s", g("ours") >= 2.0, note)

    def scen_idle(self, who, pid, port, n=10000):
        # warm the process (pools, allocator) before the baseline reading
        for _ in range(20):
            http_req(port, "GET", "/v1.41/_ping", self.token)
        time.sleep(0.3)
        before = rss_kib(pid)
        hold = 30
        p = PROCS.start(f"idle-client-{who}", [TOOLS_BIN, "idle", "--target", f"tcp:127.0.0.1:{port}", "--n", str(n),
                                               "--token", self.token, "--hold", str(hold)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(f"{self.run}/idle-{who}.log", "w"),
                        text=True)
        line = p.stdout.readline().strip()
        time.sleep(1.0)
        during = rss_kib(pid)
        p.stdin.close()
        try:
            rest = p.stdout.read()
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            PROCS.stop(p)
            rest = ""
        PROCS.procs = [(a, b) for (a, b) in PROCS.procs if b is not p]
        kv = dict(x.split("=", 1) for x in (rest.strip().splitlines() or [""])[-1].split() if "=" in x)
        kv0 = dict(x.split("=", 1) for x in line.split() if "=" in x)
        return {"before": before, "during": during, "open": int(kv0.get("open", 0)), "failed": int(kv0.get("failed", 0)),
                "alive": int(kv.get("alive_after_hold", 0))}

    def scen_idle_both(self, ours, hap, n=10000):
        o = self.scen_idle("ours", ours[0].pid, ours[1], n)
        time.sleep(1)
        h = self.scen_idle("haproxy", hap[0].pid, hap[1], n)
        per = lambda r: (r["during"] - r["before"]) / max(r["open"], 1)
        ok = o["during"] <= 64 * 1024 and o["open"] == n and o["alive"] == n
        note = f"ours: {o['open']} open, {o['alive']} still answering after hold, RSS {o['before'] / 1024:.1f} MiB before"
        if o["failed"]:
            note += f", {o['failed']} failed to open"
        self.row(f"{n} idle keep-alive connections", "RSS total", f"{o['during'] / 1024:.1f} MiB",
                 f"HAProxy {h['during'] / 1024:.1f} MiB ({h['open']} open)", "", f"{o['during'] / max(h['during'], 1):.2f}x",
                 "<= 64 MiB", ok, note)
        self.row(f"{n} idle keep-alive connections", "RSS per connection", f"{per(o):.2f} KiB",
                 f"HAProxy {per(h):.2f} KiB", "", "", "(info)")

    def scen_streams(self, ports, n=1000):
        k = (64 if self.quick else 256) * 1024
        res = {}
        for who, t in (("ours", f"tcp:127.0.0.1:{ports['ours']}"), ("haproxy", f"tcp:127.0.0.1:{ports['haproxy']}")):
            res[who] = run_tool(["streams", "--target", t, "--n", str(n), "--bytes", str(k), "--token", self.token],
                                timeout=180)
        o, h = res["ours"], res["haproxy"]
        desc = lambda r: (f"{int(r.get('bytes_in', 0)) / 2**20:.0f}/{int(r.get('bytes_out', 0)) / 2**20:.0f} MiB in/out, "
                          f"{r.get('bad_streams', '?')} bad, {float(r.get('secs', 0)):.1f} s")
        self.row(f"{n} concurrent upgraded echo streams x {k // 1024} KiB", "bytes in == bytes out",
                 "yes" if o.get("ok") == "1" else "NO", f"HAProxy {'yes' if h.get('ok') == '1' else 'NO'}", "", "",
                 "no byte lost", o.get("ok") == "1", f"ours: {desc(o)}; HAProxy: {desc(h)}")

    def scen_reload(self):
        p, port = self.start_proxy("reload", "base", self.engine_sock)
        cfg = f"{self.run}/policy-base.yaml"
        original = open(cfg).read()
        secs = 6 if self.quick else 15
        hups = 5
        out = {}
        wrk = subprocess.Popen(["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", "--timeout", "5s",
                                "-H", f"Authorization: Bearer {self.token}",
                                f"http://127.0.0.1:{port}/v1.41/containers/json"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        PROCS.procs.append(("wrk-reload", wrk))
        time.sleep(1)
        sent = 0
        for i in range(hups):
            # each reload swaps in a real (equivalent) change, written atomically
            text = original.replace("privileged containers are not allowed on CI runners",
                                    f"privileged containers are not allowed on CI runners (reload {i})")
            with open(cfg + ".tmp", "w") as f:
                f.write(text)
            os.replace(cfg + ".tmp", cfg)
            if p.poll() is None:
                os.kill(p.pid, signal.SIGHUP)
                sent += 1
            time.sleep((secs - 2) / hups)
        try:
            text, _ = wrk.communicate(timeout=secs + 30)
        except subprocess.TimeoutExpired:
            PROCS.stop(wrk)
            text = ""
        PROCS.procs = [(a, b) for (a, b) in PROCS.procs if b is not wrk]
        with open(cfg, "w") as f:
            f.write(original)
        alive = p.poll() is None
        r = {"rps": 0, "non2xx": 0, "errors": 0, "requests": 0}
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        r["rps"] = float(m.group(1)) if m else 0
        m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        r["non2xx"] = int(m.group(1)) if m else 0
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        r["errors"] = sum(int(x) for x in m.groups()) if m else 0
        m = re.search(r"(\d+) requests in", text)
        r["requests"] = int(m.group(1)) if m else 0
        fails = r["non2xx"] + r["errors"]
        note = f"{sent} SIGHUPs, {r['requests']} requests at {self.fmt_rps(r['rps'])}/s"
        if not alive:
            note += f"; PROXY EXITED (status {p.returncode}) after SIGHUP"
        self.row("reload under load (wrk c=50)", "failed requests", str(fails) if alive else f"{fails} + proxy died",
                 "", "", "", "0", fails == 0 and alive and r["requests"] > 0, note)
        PROCS.stop(p)

    def scen_real(self):
        try:
            st, _ = unix_get(REAL_SOCKET, "/_ping")
            if st != 200:
                raise OSError(f"status {st}")
        except OSError as e:
            self.row("real engine", "-", "skipped", "", "", "", "", None, f"{REAL_SOCKET} does not answer: {e}")
            return
        p, port = self.start_proxy("real", "base", REAL_SOCKET)
        secs = 2 if self.quick else 8
        for path in ("/v1.41/_ping", "/v1.41/containers/json"):
            d = run_tool(["hammer", "--target", f"unix:{REAL_SOCKET}", "--path", path, "--conns", "10",
                          "--secs", str(secs)], timeout=secs + 60)
            o = run_tool(["hammer", "--target", f"tcp:127.0.0.1:{port}", "--path", path, "--conns", "10",
                          "--secs", str(secs), "--token", self.token], timeout=secs + 60)
            dr, orps = float(d.get("rps", 0)), float(o.get("rps", 0))
            note = "" if o.get("non2xx") == "0" and o.get("errors") == "0" else \
                f"ours: {o.get('non2xx')} non-2xx, {o.get('errors')} errors"
            self.row(f"real dockerd GET {path}, c=10", "req/s", self.fmt_rps(orps), "", f"direct {self.fmt_rps(dr)}",
                     f"{orps / dr:.2f}x direct" if dr else "", "(overhead)", None, note)
            self.row(f"real dockerd GET {path}, c=10", "p50 / p99",
                     f"{self.fmt_lat(float(o.get('p50_us', 0)))} / {self.fmt_lat(float(o.get('p99_us', 0)))}", "",
                     f"direct {self.fmt_lat(float(d.get('p50_us', 0)))} / {self.fmt_lat(float(d.get('p99_us', 0)))}",
                     "", "(overhead)")
        PROCS.stop(p)

    def main(self, only):
        self.prepare()
        self.start_engines()
        want = lambda s: not only or s in only

        if want("get") or want("redact") or want("post") or want("idle"):
            ours = self.start_proxy("main", "base", self.engine_sock)
            hap = self.start_haproxy("main", self.engine_sock)
            self.probe_features(ours[1], hap[1])
            ports = {"ours": ours[1], "haproxy": hap[1]}
            if want("get"):
                self.scen_get(ports, {"ours": ours[0].pid, "haproxy": hap[0].pid})
            if want("redact"):
                red = self.start_proxy("redact", "redact", self.engine_sock)
                self.scen_redact({**ports, "ours-redact": red[1]})
                PROCS.stop(red[0])
            if want("post"):
                nob = self.start_proxy("nobody", "nobody", self.engine_sock)
                self.scen_post({**ports, "ours-nobody": nob[1]})
                PROCS.stop(nob[0])
            if want("idle"):
                self.scen_idle_both(ours, hap)
            PROCS.stop(ours[0])
            PROCS.stop(hap[0])
        if want("bulk") or want("streams"):
            ours = self.start_proxy("streams", "base", self.stream_sock)
            hap = self.start_haproxy("streams", self.stream_sock)
            ports = {"ours": ours[1], "haproxy": hap[1]}
            if want("bulk"):
                buf = self.start_proxy("streams-buffered", "base", self.stream_sock,
                                       {"DOCKER_PROXY_BULK_COPY": "buffered"})
                self.scen_bulk({**ports, "ours-buffered": buf[1]})
                PROCS.stop(buf[0])
            if want("streams"):
                self.scen_streams(ports)
            PROCS.stop(ours[0])
            PROCS.stop(hap[0])
        if want("reload"):
            self.scen_reload()
        if want("real") and not self.skip_real:
            self.scen_real()

    def report(self, started, prep_secs):
        hdr = ["scenario", "figure", "ours", "baseline", "ceiling / direct", "ratio", "target", "result", "notes"]
        lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        for r in self.rows:
            lines.append("| " + " | ".join(str(x).replace("|", "/") for x in r) + " |")
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    cpu = l.split(":", 1)[1].strip()
                    break
        try:
            rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()
        except OSError:
            rev = "?"
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
        feats = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in self.features.items())
        head = [
            f"Run: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, mode {'--quick' if self.quick else 'full'}, "
            f"{time.time() - started:.0f} s (+{prep_secs:.0f} s installing and building before), commit {rev} (binary built "
            f"{time.strftime('%H:%M:%S', time.localtime(os.path.getmtime(PROXY_BIN)))}), wrk -t1 "
            f"{self.rounds} interleaved round(s) of {self.secs} s per figure (+{self.warm} s warm-up)",
            f"Machine: {os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, Linux {os.uname().release}; "
            f"load average before run {' '.join(self.loadavg)}, after {' '.join(open('/proc/loadavg').read().split()[:3])}",
            f"Policy features active in this build: {feats or 'not probed'}",
        ] + ([f"Extra proxy environment: {' '.join(f'{k}={v}' for k, v in self.proxy_env.items())}"]
             if self.proxy_env else []) + [
        ]
        text = "\n".join(head) + "\n\n" + "\n".join(lines) + "\n"
        print(text)
        if self.out_path:
            with open(self.out_path, "w") as f:
                f.write(text)
        fails = [r for r in self.rows if r[7] == "FAIL"]
        return 1 if fails else 0


def proxy_stale():
    """True when a source file is newer than the release binary."""
    built = os.path.getmtime(PROXY_BIN)
    paths = [os.path.join(REPO, "Cargo.toml"), os.path.join(REPO, "Cargo.lock")]
    for root, _dirs, files in os.walk(os.path.join(REPO, "src")):
        paths += [os.path.join(root, f) for f in files]
    newer = [p for p in paths if os.path.exists(p) and os.path.getmtime(p) > built]
    if newer:
        log(f"release binary is older than {os.path.relpath(newer[0], REPO)} (+{len(newer) - 1} more)")
    return bool(newer)


def ensure_prereqs(rebuild, no_build=False):
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("haproxy", "haproxy"), ("nginx", "nginx-light"))
               if not shutil.which(tool)]
    if missing:
        log(f"installing from Debian: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
        if subprocess.run(install, env=env, timeout=900, stdout=subprocess.DEVNULL).returncode != 0:
            # A fresh machine may have no package lists yet.
            log("apt-get install failed; running apt-get update and trying again")
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True, timeout=900, stdout=subprocess.DEVNULL)
            subprocess.run(install, env=env, check=True, timeout=900, stdout=subprocess.DEVNULL)
    if not os.path.exists(PROXY_BIN) or rebuild or (not no_build and proxy_stale()):
        log("building the proxy: cargo build --release (fat LTO, takes minutes)")
        subprocess.run(["cargo", "build", "--release", "--bin", "docker-api-proxy"], cwd=REPO, check=True, timeout=3600)
    log("building bench-tools")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=TOOLS_DIR, check=True, timeout=900,
                   env=dict(os.environ, CARGO_TARGET_DIR=TOOLS_TARGET))


def main():
    ap = argparse.ArgumentParser(description="docker-api-proxy load-test harness")
    ap.add_argument("--quick", action="store_true", help="short runs (whole harness under two minutes)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the release binary even if it exists")
    ap.add_argument("--no-build", action="store_true",
                    help="use the existing release binary even if src/ is newer (it is still built if missing)")
    ap.add_argument("--only", default="", help="comma list of: get,redact,post,bulk,idle,streams,reload,real")
    ap.add_argument("--no-real-engine", action="store_true", help="skip the real dockerd scenario")
    ap.add_argument("--proxy-env", action="append", default=[], metavar="K=V",
                    help="extra environment for the proxy, e.g. MONOIO_FORCE_LEGACY_DRIVER=1 (repeatable)")
    ap.add_argument("--out", default="", help="also write the results table (markdown) to this file")
    args = ap.parse_args()

    prep_started = time.time()
    ensure_prereqs(args.rebuild, args.no_build)
    started = time.time()
    # 10,000 idle connections need more descriptors (children inherit this).
    # (Raise the soft limit to the hard one; without CAP_SYS_RESOURCE the hard
    # limit cannot move, and 10,000 + a few hundred fits in the usual 20,000.)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 200000 if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < 10500:
        log(f"WARNING: open-file limit is {nofile}; the 10,000 idle connection scenario needs more")
    deadline = 240 if args.quick else 1500

    def on_signal(sig, _frame):
        raise SystemExit(f"stopped by signal {sig}")

    def on_alarm(_sig, _frame):
        raise SystemExit(f"harness deadline ({deadline} s) exceeded")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(deadline)
    atexit.register(PROCS.stop_all)

    b = Bench(args.quick, args.out, args.no_real_engine, args.proxy_env)
    b.loadavg = open("/proc/loadavg").read().split()[:3]
    only = set(x for x in args.only.split(",") if x)
    code = 0
    try:
        b.main(only)
    except SystemExit as e:
        log(str(e))
        code = 2
    except Exception as e:  # report what we have
        log(f"error: {e!r}")
        code = 2
    finally:
        signal.alarm(0)
        PROCS.stop_all()
    rc = b.report(started, started - prep_started)
    log(f"logs and configs kept in {b.run}")
    sys.exit(code or rc)


if __name__ == "__main__":
    main()
