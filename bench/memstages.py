"""Where the proxy's memory goes per intercepted connection (diagnostic for bench/load.sh).

Opens N CONNECTs to a running ratls-proxy (bench/common.sh's setup), then upgrades them and
sends one request each, printing the proxy's RSS after every stage. Loopback only.
    python3 bench/memstages.py N PROXY_PORT CA_PEM PROXY_PID
Note: the TLS stage below uses asyncio's start_tls loosely; its row is not reliable on its own,
the "requests sent" row includes the client TLS handshakes.
"""
import asyncio, ssl, sys
N = int(sys.argv[1]); PORT = int(sys.argv[2]); CA = sys.argv[3]; PID = sys.argv[4]
def rss():
    for l in open(f"/proc/{PID}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) // 1024
async def connect_only():
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    w.write(b"CONNECT bench.enclave.test:443 HTTP/1.1\r\nHost: bench.enclave.test:443\r\n\r\n")
    await w.drain()
    line = await r.readuntil(b"\r\n\r\n")
    assert line.startswith(b"HTTP/1.1 200"), line
    return r, w
async def main():
    print("baseline RSS MiB", rss())
    conns = await asyncio.gather(*[connect_only() for _ in range(N)])
    await asyncio.sleep(1); print(f"{N} CONNECTs answered 200, no TLS yet: RSS MiB", rss())
    ctx = ssl.create_default_context(cafile=CA)
    tls = []
    for r, w in conns:
        # upgrade the raw stream with TLS
        loop = asyncio.get_running_loop()
        transport = w.transport; protocol = transport.get_protocol()
        new = await loop.start_tls(transport, protocol, ctx, server_hostname="bench.enclave.test")
        rr = asyncio.StreamReader(); pr = asyncio.StreamReaderProtocol(rr); 
        tls.append((new, r))
    await asyncio.sleep(1); print(f"{N} client TLS handshakes done: RSS MiB", rss())
    for new, r in tls:
        new.write(b"GET / HTTP/1.1\r\nHost: bench.enclave.test\r\n\r\n")
    await asyncio.sleep(3); print(f"{N} requests sent (one each): RSS MiB", rss())
    for new, r in tls: new.close()
    await asyncio.sleep(3); print("all closed: RSS MiB", rss())
asyncio.run(main())
