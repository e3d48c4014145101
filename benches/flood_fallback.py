#!/usr/bin/env python3
"""The write flood of benches/flood.rs with a stdlib-only Python client, for when the release
build of the Rust harness is not ready (BENCHMARKS.md "Write flood (issue 21)" says which
figures came from which). Same shape: sustainable rate as the admin (64 clients), then a
flood as a non-admin `edit` user while a `view` user reads and watches and another `edit`
user updates a marker every 100 ms; RSS sampled every 200 ms; every 201'd name listed after.

Usage: flood_fallback.py KETCH_BINARY [FLOOD_SECS] [FLOOD_CONNS]
"""
import asyncio, json, os, shutil, socket, ssl, subprocess, sys, tempfile, time, urllib.parse

import yaml

KETCH = sys.argv[1]
FLOOD_SECS = float(sys.argv[2]) if len(sys.argv) > 2 else 60
CONNS = int(sys.argv[3]) if len(sys.argv) > 3 else 512
SUS_SECS = float(os.environ.get("SUS_SECS", 10))
BASELINE_SECS = float(os.environ.get("BASELINE_SECS", 10))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self):
        base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "bench-data")
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(dir=base)
        self.port = free_port()
        self.env = dict(os.environ, KETCH_CONFIG=os.path.join(self.dir, "config"), KETCH_LOG="warn")
        self.proc = subprocess.Popen(
            [KETCH, "server", "--listen", f"127.0.0.1:{self.port}", "--no-agent",
             "--gateway", "127.0.0.1:0", "--gateway-tls", "127.0.0.1:0",
             "--data-dir", os.path.join(self.dir, "data")],
            env=self.env, stdout=subprocess.DEVNULL)
        for _ in range(600):
            try:
                cfg = yaml.safe_load(open(self.env["KETCH_CONFIG"]))
                if cfg and (cfg.get("certificate_authority") or cfg.get("certificateAuthority")):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        self.token = cfg["token"]
        ca = cfg.get("certificate_authority") or cfg.get("certificateAuthority")
        self.ctx = ssl.create_default_context(cadata=ca)
        self.ctx.check_hostname = False

    def user_token(self, name):
        out = subprocess.run([KETCH, "token", "create", "--user", name], env=self.env,
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def rss_kib(self):
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def cpu(self):
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / 100

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Conn:
    """One keep-alive HTTP/1.1 connection over TLS; reconnects when it breaks."""

    def __init__(self, srv, token):
        self.srv, self.token, self.r, self.w = srv, token, None, None

    async def request(self, method, path, body=None, ctype="application/json"):
        try:
            if self.w is None:
                self.r, self.w = await asyncio.open_connection("127.0.0.1", self.srv.port, ssl=self.srv.ctx)
            data = b"" if body is None else body.encode()
            head = (f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {self.token}\r\n"
                    f"content-length: {len(data)}\r\n")
            if body is not None:
                head += f"content-type: {ctype}\r\n"
            self.w.write(head.encode() + b"\r\n" + data)
            status = await self.r.readuntil(b"\r\n")
            code = int(status.split()[1])
            headers = {}
            while True:
                line = await self.r.readuntil(b"\r\n")
                if line == b"\r\n":
                    break
                k, v = line.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            if "content-length" in headers:
                payload = await self.r.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                payload = b""
                while True:
                    size = int((await self.r.readuntil(b"\r\n")).strip(), 16)
                    payload += await self.r.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                payload = b""
            if headers.get("connection") == "close":
                self.close()
            return code, headers, payload
        except (OSError, asyncio.IncompleteReadError, ValueError, ssl.SSLError) as e:
            self.close()
            return 0, {"error": repr(e)}, b""

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


CMS = "/api/v1/namespaces/default/configmaps"


def cm(name, data=None):
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "data": data or {"d": "x"}})


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)] * 1000 if xs else 0.0


async def sustainable():
    srv = Server()
    try:
        deadline = time.monotonic() + SUS_SECS
        n = [0]

        async def worker(w):
            c = Conn(srv, srv.token)
            i = 0
            while time.monotonic() < deadline:
                code, _, _ = await c.request("POST", CMS, cm(f"sus-{w}-{i}"))
                assert code == 201, code
                i += 1
                n[0] += 1

        t = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(64)))
        return n[0] / (time.monotonic() - t)
    finally:
        srv.stop()


async def bind(srv, admin, name, role):
    tok = srv.user_token(name)
    rb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": {"name": f"{name}-{role}", "namespace": "default"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
          "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]}
    code, _, body = await admin.request("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", json.dumps(rb))
    assert code == 201, (code, body)
    return tok


async def main():
    sus = await sustainable()
    print(f"sustainable: {sus:.0f} creates/s (64 admin clients, {SUS_SECS} s)", flush=True)
    srv = Server()
    try:
        admin = Conn(srv, srv.token)
        flood_tok = await bind(srv, admin, "flood", "edit")
        other_tok = await bind(srv, admin, "other", "edit")
        reader_tok = await bind(srv, admin, "reader", "view")
        assert (await admin.request("POST", CMS, cm("target")))[0] == 201
        assert (await admin.request("POST", CMS, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "marker", "labels": {"role": "marker"}}, "data": {"markerSeq": "0"}})))[0] == 201
        for _ in range(300):
            ok = (await Conn(srv, reader_tok).request("GET", f"{CMS}/target"))[0] == 200
            ok &= (await Conn(srv, flood_tok).request("POST", CMS, cm("probe-flood")))[0] in (201, 409)
            ok &= (await Conn(srv, other_tok).request("POST", CMS, cm("probe-other")))[0] in (201, 409)
            if ok:
                break
            await asyncio.sleep(0.1)
        _, _, body = await admin.request("GET", f"{CMS}?limit=1")
        rv = json.loads(body)["metadata"]["resourceVersion"]

        stop = asyncio.Event()
        flood_stop = asyncio.Event()
        acks, seen_sel, seen_all, watch_events = {}, {}, {}, [0, 0]

        async def watcher(selector, seen, idx):
            q = f"{CMS}?watch=true&resourceVersion={rv}"
            if selector:
                q += "&labelSelector=" + urllib.parse.quote(selector)
            r, w = await asyncio.open_connection("127.0.0.1", srv.port, ssl=srv.ctx)
            w.write(f"GET {q} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {reader_tok}\r\n\r\n".encode())
            buf = b""
            while not stop.is_set():
                try:
                    chunk = await asyncio.wait_for(r.read(1 << 16), 0.2)
                except asyncio.TimeoutError:
                    continue
                if not chunk:
                    print(f"watch {selector} ended", flush=True)
                    return
                now = time.monotonic()
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    # The socket's raw bytes: chunked framing lines are not events.
                    if line.startswith(b"{"):
                        watch_events[idx] += 1
                    i = line.find(b'"markerSeq":"')
                    if i >= 0:
                        seq = int(line[i + 13:line.index(b'"', i + 13)])
                        seen.setdefault(seq, now)
            w.close()

        async def reads(path, period, out):
            c = Conn(srv, reader_tok)
            while not stop.is_set():
                t = time.monotonic()
                code, _, _ = await c.request("GET", path)
                out.append((t, time.monotonic() - t, code))
                await asyncio.sleep(max(0, period - (time.monotonic() - t)))

        marker_codes = {}

        async def marker():
            c = Conn(srv, other_tok)
            seq = 0
            while not stop.is_set():
                t = time.monotonic()
                seq += 1
                code, _, _ = await c.request("PATCH", f"{CMS}/marker", json.dumps({"data": {"markerSeq": str(seq)}}),
                                             "application/merge-patch+json")
                marker_codes[code] = marker_codes.get(code, 0) + 1
                if code == 200:
                    acks[seq] = time.monotonic()
                await asyncio.sleep(max(0, 0.1 - (time.monotonic() - t)))

        rss = [srv.rss_kib(), srv.rss_kib()]

        async def sampler():
            while not stop.is_set():
                rss[1] = max(rss[1], srv.rss_kib())
                await asyncio.sleep(0.2)

        gets, lists = [], []
        bg = [asyncio.create_task(x) for x in (
            watcher("role=marker", seen_sel, 0), watcher(None, seen_all, 1),
            reads(f"{CMS}/target", 0.05, gets), reads(f"{CMS}?limit=50", 0.1, lists), marker(), sampler())]
        # Readers, marker and watches alone first: the same figures without the flood.
        await asyncio.sleep(BASELINE_SECS)

        results = []  # (task, i, code)
        created_lat = []

        async def flooder(t):
            c = Conn(srv, flood_tok)
            i = 0
            while not flood_stop.is_set():
                s = time.monotonic()
                code, h, _ = await c.request("POST", CMS, cm(f"flood-{t}-{i}"))
                if code == 201:
                    created_lat.append(time.monotonic() - s)
                results.append((t, i, code))
                i += 1

        cpu0, own0 = srv.cpu(), time.process_time()
        t0 = time.monotonic()
        ft = [asyncio.create_task(flooder(t)) for t in range(CONNS)]
        await asyncio.sleep(FLOOD_SECS)
        flood_stop.set()
        await asyncio.gather(*ft)
        wall = time.monotonic() - t0
        cpu, own = srv.cpu() - cpu0, time.process_time() - own0
        await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*bg)
        rss_after = srv.rss_kib()

        codes = {}
        for _, _, c in results:
            codes[c] = codes.get(c, 0) + 1
        n = len(results)
        print(f"flood: {CONNS} connections as user `flood`, {wall:.1f} s: {n} attempts ({n / wall:.0f}/s offered, "
              f"{n / wall / sus:.2f}x the sustainable rate); {codes.get(201, 0)} created ({codes.get(201, 0) / wall:.0f}/s), "
              f"{codes.get(429, 0)} refused 429; codes {dict(sorted(codes.items()))} (0 = no answer)")
        print(f"flood 201 latency p50 {pct(created_lat, .5):.2f} ms p99 {pct(created_lat, .99):.2f} ms")
        print(f"CPU during the flood: server {cpu:.1f} s ({cpu / wall:.2f} cores), client {own:.1f} s ({own / wall:.2f} cores)")
        for phase, lo, hi in (("before the flood", t0 - BASELINE_SECS, t0), ("during the flood", t0, t0 + wall)):
            for what, xs in (("GET one ConfigMap", gets), ("LIST limit=50", lists)):
                xs = [(x, c) for st, x, c in xs if lo <= st < hi]
                lat = [x for x, _ in xs]
                cs = {}
                for _, c in xs:
                    cs[c] = cs.get(c, 0) + 1
                print(f"{phase}: reader {what}: {len(xs)} requests, p50 {pct(lat, .5):.2f} ms p99 {pct(lat, .99):.2f} ms "
                      f"max {max(lat) * 1000 if lat else 0:.2f} ms; codes {cs}")
            for what, seen in (("selector role=marker", seen_sel), ("whole namespace", seen_all)):
                d = [max(0.0, seen[s] - a) for s, a in acks.items() if s in seen and lo <= a < hi]
                missing = sum(1 for s, a in acks.items() if s not in seen and lo <= a < hi)
                print(f"{phase}: watch delay, {what}: {len(d)} updates, p50 {pct(d, .5):.2f} ms p99 {pct(d, .99):.2f} ms "
                      f"max {max(d) * 1000 if d else 0:.2f} ms; {missing} acknowledged updates not seen")
        print(f"marker writer (user `other`, every 100 ms, whole run): codes {marker_codes}")
        print(f"whole-namespace watch: {watch_events[1]} events read")
        print(f"server RSS: {rss[0] // 1024} MiB before, max {rss[1] // 1024} MiB (every 200 ms), {rss_after // 1024} MiB after")

        alive = srv.proc.poll() is None
        # A fresh connection: the admin's has been idle past the server's 60 s head timeout.
        admin = Conn(srv, srv.token)
        ready = (await admin.request("GET", "/readyz"))[0] == 200
        stored, cont = set(), None
        while True:
            q = f"{CMS}?limit=5000" + (f"&continue={urllib.parse.quote(cont, safe='')}" if cont else "")
            code, _, body = await admin.request("GET", q)
            assert code == 200, (code, body[:300])
            page = json.loads(body)
            stored.update(i["metadata"]["name"] for i in page["items"])
            cont = page["metadata"].get("continue")
            if not cont:
                break
        lost = [f"flood-{t}-{i}" for t, i, c in results if c == 201 and f"flood-{t}-{i}" not in stored]
        refused_stored = sum(1 for t, i, c in results if c == 429 and f"flood-{t}-{i}" in stored)
        other_stored = sum(1 for t, i, c in results if c not in (201, 429) and f"flood-{t}-{i}" in stored)
        print(f"after the flood: process alive {alive}, /readyz 200 {ready}; listed {len(stored)} ConfigMaps; "
              f"acknowledged and lost: {len(lost)} {lost[:5]}; 429 and stored: {refused_stored}; other answer and stored: {other_stored}")
    finally:
        srv.stop()


asyncio.run(main())
