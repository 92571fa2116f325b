#!/usr/bin/env python3
"""The corpus's memcached client (loopback only). One answer line per request:

  memcached-client.py text PORT REQUEST
      sends REQUEST (Python escapes: "get a\\r\\n"), then "version\\r\\n", and prints every reply
      line before the VERSION line, joined with " | " ("no reply" after 30 s of tries: the server
      may still be starting; "connection closed" if it closed, e.g. died).
  memcached-client.py sasl PORT USER PASS
      a binary-protocol SASL_AUTH with mechanism PLAIN; prints the reply's body and status
      ("Authenticated (status 0x0)", "Auth failure. (status 0x20)").
  memcached-client.py load OUT VULNERABLE FIXED CONNS -- text|sasl PORT ARGS...
      a load generator: CONNS threads, each sending that request again and again (text: on one
      connection; sasl: a new connection for each, as a client that authenticates does) and
      classifying each answer with the regexes VULNERABLE and FIXED. Writes OUT.ready once every
      thread has had an answer. Signal SIGRTMIN+K starts phase K (0 "applying", the first,
      1 "applied", 2 "reverting", 3 "reverted"); SIGTERM stops it, prints a summary line and exits 1 if an
      answer was wrong for its phase (a vulnerable answer while applied, a fixed one once
      reverted), an answer was neither, or a request failed; else 0.
"""
import re, signal, socket, struct, sys, threading, time


def connect(port, deadline):
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.settimeout(10)
            return s
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        d = s.recv(n - len(data))
        if not d:
            raise EOFError("connection closed")
        data += d
    return data


class Text:
    def __init__(self, port, request):
        self.port, self.request = port, request.encode().decode("unicode_escape").encode("latin-1")
        self.s, self.buf = None, b""

    def ask(self, deadline):
        if self.s is None:
            self.s, self.buf = connect(self.port, deadline), b""
        self.s.sendall(self.request + b"version\r\n")
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                d = self.s.recv(65536)
                if not d:
                    self.s = None
                    raise EOFError("connection closed")
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line.startswith(b"VERSION "):
                return " | ".join(lines)
            lines.append(line.decode("latin-1"))


class Sasl:
    def __init__(self, port, user, password):
        self.port, self.user, self.password = port, user.encode(), password.encode()

    def ask(self, deadline):
        s = connect(self.port, deadline)
        try:
            key, val = b"PLAIN", b"\0" + self.user + b"\0" + self.password
            s.sendall(struct.pack("!BBHBBHIIQ", 0x80, 0x21, len(key), 0, 0, 0, len(key) + len(val), 7, 0)
                      + key + val)
            _, _, _, _, _, status, bodylen, _, _ = struct.unpack("!BBHBBHIIQ", recv_exact(s, 24))
            body = recv_exact(s, bodylen).decode("latin-1")
            return "%s (status 0x%x)" % (body, status)
        finally:
            s.close()


def client(args):
    if args[0] == "text":
        return Text(int(args[1]), args[2])
    if args[0] == "sasl":
        return Sasl(int(args[1]), args[2], args[3])
    sys.exit("memcached-client.py: unknown mode " + args[0])


def one(args):
    try:
        print(client(args).ask(time.time() + 30))
    except EOFError as e:
        print(e)
    except OSError:
        print("no reply")


PHASES = ["applying", "applied", "reverting", "reverted"]


def load(out, vulnerable, fixed, conns, args):
    vulnerable, fixed = re.compile(vulnerable), re.compile(fixed)
    phase = [0]
    stop = threading.Event()
    lock = threading.Lock()
    counts = [{"vulnerable": 0, "fixed": 0} for _ in PHASES]
    wrong, failed, answered = [], [0], [0]
    ready = [0]

    def run():
        c = client(args)
        first = True
        while not stop.is_set():
            p = phase[0]
            try:
                a = c.ask(time.time() + 30)
            except (OSError, EOFError) as e:
                with lock:
                    failed[0] += 1
                    if len(wrong) < 5:
                        wrong.append("%s: %s" % (PHASES[p], e))
                c = client(args)
                continue
            kind = "vulnerable" if vulnerable.search(a) else "fixed" if fixed.search(a) else None
            with lock:
                answered[0] += 1
                # Sent in one phase, answered in the next: the server may have run either version
                # (a request sent once reverted, answered after the next apply). Not judged.
                if phase[0] != p and kind is not None:
                    counts[p]["crossed"] = counts[p].get("crossed", 0) + 1
                    continue
                if kind is None or (p == 1 and kind == "vulnerable") or (p == 3 and kind == "fixed"):
                    if len(wrong) < 5:
                        wrong.append("%s: %s" % (PHASES[p], a[:120]))
                    counts[p]["wrong"] = counts[p].get("wrong", 0) + 1
                if kind is not None:
                    counts[p][kind] += 1
                if first:
                    first = False
                    ready[0] += 1
                    if ready[0] == conns:
                        open(out + ".ready", "w").close()

    for k in range(1, len(PHASES)):  # one signal a phase: two steps in quick succession cannot merge
        signal.signal(signal.SIGRTMIN + k, lambda signum, _: phase.__setitem__(0, signum - signal.SIGRTMIN))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=run, daemon=True) for _ in range(conns)]
    t0 = time.time()
    for t in threads:
        t.start()
    while not stop.is_set():
        stop.wait(0.2)
    for t in threads:
        t.join(15)
    with lock:
        total = answered[0] + failed[0]
        bad = failed[0] + sum(c.get("wrong", 0) for c in counts)
        parts = ", ".join("%s %d vulnerable/%d fixed%s%s" % (PHASES[i], c["vulnerable"], c["fixed"],
                                                             "/%d into the next phase" % c["crossed"] if c.get("crossed") else "",
                                                             "/%d WRONG" % c["wrong"] if c.get("wrong") else "")
                          for i, c in enumerate(counts))
        print("load: %d connections, %d requests in %.1f s (%s); %d failed%s" % (
            conns, total, time.time() - t0, parts, failed[0], "; first wrong: " + " // ".join(wrong) if wrong else ""))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "load":
        sep = a.index("--")
        load(a[1], a[2], a[3], int(a[4]), a[sep + 1:])
    else:
        one(a)
