"""Holds intercepted connections open through a running ratls-proxy, for bench/mem.sh.

Each connection is a CONNECT, the client's TLS handshake against the proxy's CA, and one
`GET /` answered in full: the tunnel, its verdict and its keep-alive state exist, then it sits
idle. Driven line by line on stdin, answering each command with one line on stdout:
    hold N            open N more such connections          -> "held N"
    inflight M MS     send `GET /slow?ms=MS` on M of them     -> "sent M"
    finish            read those M answers (all must be 200)  -> "finished M"
    close             close every connection                  -> "closed N"
    python3 bench/mem_hold.py PROXY_PORT CA_PEM
Sequential blocking sockets on purpose: the figures measured between commands must not depend
on how the client's own work was scheduled. Loopback only.
"""
import http.client, socket, ssl, sys

PORT = int(sys.argv[1]); CA = sys.argv[2]; HOST = "bench.enclave.test"
ctx = ssl.create_default_context(cafile=CA)
conns = []; pending = []

def open_one():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1024)
        if not chunk: raise SystemExit("proxy closed the CONNECT")
        head += chunk
    if not head.startswith(b"HTTP/1.1 200"): raise SystemExit(f"CONNECT refused: {head[:80]!r}")
    c = http.client.HTTPConnection(HOST, timeout=30)
    c.sock = ctx.wrap_socket(s, server_hostname=HOST)
    c.request("GET", "/")
    r = c.getresponse(); r.read()
    if r.status != 200: raise SystemExit(f"GET / answered {r.status}")
    return c

for line in sys.stdin:
    cmd = line.split()
    if not cmd: continue
    if cmd[0] == "hold":
        for _ in range(int(cmd[1])): conns.append(open_one())
        print(f"held {len(conns)}", flush=True)
    elif cmd[0] == "inflight":
        pending = conns[:int(cmd[1])]
        for c in pending: c.request("GET", f"/slow?ms={int(cmd[2])}")
        print(f"sent {len(pending)}", flush=True)
    elif cmd[0] == "finish":
        for c in pending:
            r = c.getresponse(); r.read()
            if r.status != 200: raise SystemExit(f"GET /slow answered {r.status}")
        print(f"finished {len(pending)}", flush=True); pending = []
    elif cmd[0] == "close":
        for c in conns: c.close()
        print(f"closed {len(conns)}", flush=True); conns = []
