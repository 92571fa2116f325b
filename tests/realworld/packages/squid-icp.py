#!/usr/bin/env python3
"""Usage: squid-icp.py PORT URL [TAIL [PRIME]]: sends one ICP v2 ICP_QUERY (RFC 2186) for URL
(NUL-terminated, then the bytes of TAIL, if any) to 127.0.0.1:PORT and prints the reply as
"OPCODE URL" on one line ("no reply" after 30 s of tries: squid may still be starting).
PRIME, when given, is a URL queried first (its reply not printed)."""
import socket, struct, sys, time

OPCODES = {1: "ICP_QUERY", 2: "ICP_HIT", 3: "ICP_MISS", 4: "ICP_ERR", 10: "ICP_SECHO",
           11: "ICP_DECHO", 21: "ICP_MISS_NOFETCH", 22: "ICP_DENIED", 23: "ICP_HIT_OBJ"}
port, url = int(sys.argv[1]), sys.argv[2].encode()
tail = sys.argv[3].encode() if len(sys.argv) > 3 else b""
prime = sys.argv[4].encode() if len(sys.argv) > 4 and sys.argv[4] else None
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 0))   # not squid's own address: squid ignores those packets as loops
s.settimeout(1.0)


def query(url, tail, reqnum):
    """The reply to one query as "OPCODE URL", or None after 30 s."""
    payload = struct.pack("!I", 0) + url + b"\0" + tail   # requester host address, URL
    packet = struct.pack("!BBHIIII", 1, 2, 20 + len(payload), reqnum, 0, 0, 0) + payload
    deadline = time.time() + 30
    while time.time() < deadline:
        s.sendto(packet, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(65536)
        except (socket.timeout, ConnectionRefusedError):
            continue
        if len(data) < 20:
            continue
        opcode, _, length, got = struct.unpack("!BBHI", data[:8])
        if got != reqnum:
            continue
        body = data[20:length].split(b"\0")[0]
        return OPCODES.get(opcode, "opcode %d" % opcode) + " " + body.decode("latin-1")
    return None


reqnum = int(time.time() * 1000) & 0x3fffffff
if prime is not None and query(prime, b"", reqnum + 0x40000000) is None:
    print("no reply")
    sys.exit(0)
print(query(url, tail, reqnum) or "no reply")
